"""Running the HTTP service on uvicorn: one process, or several workers that each load the run.

With `workers > 1` uvicorn imports the app by name in each worker process, so the run folder and settings
travel in environment variables and `app_from_env` builds the app there. The run is loaded once in the
calling process first, so a bad run folder fails before any worker starts.

Once the run is loaded, `gc.freeze()` moves everything alive into the collector's permanent generation: the
vocabularies and item tables are hundreds of thousands of objects, and without it each full collection
walks them all (about 200 ms on Beauty, paid by whichever requests are in flight)."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
from pathlib import Path

from fastapi import FastAPI

from ssrf.serving.app import ServeSettings, create_app
from ssrf.serving.predictor import Predictor

RUN_ENV, SETTINGS_ENV = "SSRF_SERVE_RUN", "SSRF_SERVE_SETTINGS"


def app_from_env() -> FastAPI:
    """The app for a uvicorn worker: the run and settings named by the environment."""
    settings = ServeSettings(**json.loads(os.environ.get(SETTINGS_ENV, "{}")))
    app = create_app(Predictor.load(os.environ[RUN_ENV]), settings)
    gc.freeze()
    return app


def serve(
    predictor: Predictor,
    settings: ServeSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    access_log: bool = True,
) -> None:
    """Serve until interrupted (uvicorn exits non-zero when it cannot bind)."""
    import uvicorn

    if workers <= 1:
        app = create_app(predictor, settings)
        gc.freeze()
        uvicorn.run(app, host=host, port=port, access_log=access_log)
        return
    os.environ[RUN_ENV] = str(Path(predictor.run["dir"]).resolve())
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    uvicorn.run(
        "ssrf.serving.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
    )
