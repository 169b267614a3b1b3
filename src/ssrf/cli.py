"""The `ssrf` command line: a thin shell over ssrf.pipeline. Only this module prints."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ssrf.core import DataError

if TYPE_CHECKING:
    from ssrf.pipeline import RunConfig
    from ssrf.reproduce.datasets import DatasetSpec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click output: usage errors on one line, help text printed as written
    help="Context-aware sequential recommendation (SSRF): data, training, evaluation, serving.",
)
data_app = typer.Typer(no_args_is_help=True, help="Ingest and inspect interaction logs.")
app.add_typer(data_app, name="data")

FormatOpt = Annotated[
    str,
    typer.Option(
        "--format", "-f", help="taobao, retailrocket, s3rec, diginetica, generic or atomic (RecBole)"
    ),
]
Paths = Annotated[list[Path], typer.Argument(help="input file(s), or one prepared folder")]


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _threads(requested: int | None) -> None:
    """Set PyTorch's thread count (see distributed.pick_threads) and say what was chosen."""
    import torch

    from ssrf.training.distributed import pick_threads

    n, why = pick_threads(requested)
    torch.set_num_threads(n)
    typer.echo(f"using {n} thread{'s' * (n > 1)} ({why}; --threads N to choose)", err=True)


ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="PyTorch threads (default: $OMP_NUM_THREADS, else the cores not busy now: cores minus the "
        "other running tasks)",
    ),
]


def _mapping(spec: str | None, file: Path | None):
    from ssrf.io import GenericMapping

    if file is not None:
        return GenericMapping.from_toml(file)
    if spec is None:
        return None
    table: dict[str, object] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise DataError(f"--map expects key=column pairs separated by commas, got {part!r}")
        key = key.strip()
        table[key] = (
            tuple(v for v in value.split(";") if v) if key in ("context", "behaviors") else value.strip()
        )
    return GenericMapping.from_dict(table, source="--map")


def _prepare_opts(
    split: str, min_user: int, min_item: int, sample_users: int | None, seed: int, strict: bool
):
    from ssrf.dataset.prepare import PrepareConfig

    return PrepareConfig(
        split=split,
        min_user_events=min_user,
        min_item_events=min_item,
        sample_users=sample_users,
        seed=seed,
        strict=strict,
    )


def _prepare(
    paths, fmt, split, min_user, min_item, sample_users, seed, strict, map_spec, map_file, root, force
):
    from ssrf import pipeline

    cfg = _prepare_opts(split, min_user, min_item, sample_users, seed, strict)
    return pipeline.prepare(paths, fmt, cfg, mapping=_mapping(map_spec, map_file), root=root, force=force)


Split = Annotated[str, typer.Option(help="temporal (the paper's 70/30 time cut), loo (leave-one-out), auto")]
MinUser = Annotated[int, typer.Option("--min-user-events", help="k-core: minimum events per user")]
MinItem = Annotated[int, typer.Option("--min-item-events", help="k-core: minimum events per item")]
Sample = Annotated[int | None, typer.Option("--sample-users", help="keep a seeded sample of N users")]
Seed = Annotated[int, typer.Option(help="seed of the user sample")]
Strict = Annotated[bool, typer.Option("--strict", help="stop at the first dirty row instead of dropping it")]
MapSpec = Annotated[
    str | None,
    typer.Option(
        "--map", help="generic: user=COL,item=COL,timestamp=COL[,behavior=COL][,context=COL;COL][,ts_unit=ms]"
    ),
]
MapFile = Annotated[
    Path | None, typer.Option("--mapping", help="generic: a TOML file with the column mapping")
]
Root = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="where prepared folders go (default data/processed or $SSRF_DATA_DIR)"),
]
Force = Annotated[bool, typer.Option("--force", help="rebuild even when a prepared folder exists")]


@data_app.command("prepare")
def data_prepare(
    paths: Paths,
    fmt: FormatOpt,
    split: Split = "auto",
    min_user: MinUser = 5,
    min_item: MinItem = 5,
    sample_users: Sample = None,
    seed: Seed = 0,
    strict: Strict = False,
    map_spec: MapSpec = None,
    map_file: MapFile = None,
    root: Root = None,
    force: Force = False,
) -> None:
    """Clean, filter, remap and split raw files into a prepared folder; print its path."""
    try:
        prepared = _prepare(
            paths, fmt, split, min_user, min_item, sample_users, seed, strict, map_spec, map_file, root, force
        )
    except DataError as exc:
        _fail(exc)
    typer.echo(str(prepared.path))


@data_app.command("stats")
def data_stats(
    paths: Paths,
    fmt: FormatOpt,
    split: Split = "auto",
    min_user: MinUser = 5,
    min_item: MinItem = 5,
    sample_users: Sample = None,
    seed: Seed = 0,
    strict: Strict = False,
    map_spec: MapSpec = None,
    map_file: MapFile = None,
    root: Root = None,
) -> None:
    """Print the paper's Table I for a dataset, with its dropped-row counts by reason."""
    from ssrf.reports.tables import dataset_stats

    try:
        prepared = _prepare(
            paths, fmt, split, min_user, min_item, sample_users, seed, strict, map_spec, map_file, root, False
        )
    except DataError as exc:
        _fail(exc)
    typer.echo(dataset_stats({**prepared.meta, "path": str(prepared.path)}))


def _results_table(result: dict, split: str = "test") -> str:
    from ssrf.reports.tables import markdown

    kinds = ("repeat", "novel")
    scores = result[split]
    metrics = {
        k: v for k, v in scores.items() if k not in ("users", "repeat_share") and not k.endswith(kinds)
    }
    head = (
        f"model {result['model']} on {result['dataset']} ({result['protocol']} protocol, "
        f"{int(scores['users'])} {split} users, history masked: {result['mask_history']})"
    )
    table = markdown(["positives", *metrics], [["all", *metrics.values()]])
    if "repeat_share" in scores:  # the same metrics on repeat and on novel positives alone
        rows = [[kind, *(scores.get(f"{k}_{kind}", float("nan")) for k in metrics)] for kind in kinds]
        table = markdown(["positives", *metrics], [["all", *metrics.values()], *rows])
        table += f"\n\nrepeat positives (items the user had before): {scores['repeat_share']:.1%} of all"
    return head + "\n\n" + table


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="a TOML run config with sections data, model_options, train, eval (default: the model's shipped "
        "preset, src/ssrf/presets)",
    ),
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override: section.key=value (repeatable)")]


def _torchrun(nproc: int) -> int:
    """Run this same `ssrf train` command line under torchrun with `nproc` processes; its exit code."""
    import subprocess

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:  # the free cores shared out (torchrun would give each process one)
        from ssrf.training.distributed import pick_threads

        env["OMP_NUM_THREADS"] = str(max(1, pick_threads()[0] // nproc))
    return subprocess.call([*cmd, "-m", "ssrf", *argv], env=env)


@app.command("train")
def train(
    data: Annotated[list[Path], typer.Option("--data", help="raw file(s) or a prepared folder")],
    fmt: FormatOpt = "taobao",
    model: Annotated[
        str | None, typer.Option(help="a registered model (`ssrf models` lists them); default ssrf")
    ] = None,
    config: ConfigOpt = None,
    paper: Annotated[
        bool,
        typer.Option(
            "--paper",
            help="SSRF's published configuration (bce with 3 negatives, untied output, AUC selection, "
            "buy weighted 10) instead of our best (presets/paper.toml)",
        ),
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="most epochs (early stopping may stop sooner)")] = None,
    seed: Annotated[
        int | None, typer.Option(help="seed of all randomness (init, batches, negatives)")
    ] = None,
    loss: Annotated[str | None, typer.Option(help="bce, ce or sampled-softmax")] = None,
    behavior_weights: Annotated[str | None, typer.Option(help="e.g. pv=1,fav=1,cart=1,buy=10")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N")] = None,
    out: Annotated[
        Path | None, typer.Option(help="run folder (default runs/<model>-<data>-s<seed>-<time>)")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")] = False,
    overrides: SetOpt = None,
    map_spec: MapSpec = None,
    map_file: MapFile = None,
    root: Root = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="data-parallel processes on this machine (runs torchrun; gloo on CPU, NCCL on GPUs)",
        ),
    ] = 1,
    threads: ThreadsOpt = None,
    track: Annotated[
        str | None,
        typer.Option(
            help="also log to tensorboard or mlflow (optional extras: pip install 'ssrf[tensorboard]'); "
            "`tensorboard --logdir runs` then shows every run"
        ),
    ] = None,
    track_dir: Annotated[
        Path | None,
        typer.Option(help="where the tracker writes (default RUN/tensorboard, or RUN/mlflow.db for mlflow)"),
    ] = None,
) -> None:
    """Train a model, select it on validation, evaluate test once, and print the results table.

    Without --config the model's shipped preset is used (the best settings we measured; --paper: SSRF as
    published); --set and the options above override it."""
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_torchrun(nproc))
    from ssrf import pipeline
    from ssrf.training.loop import check_device
    from ssrf.training.tracking import check_tracker

    try:
        if config is not None and paper:
            raise DataError("give --config or --paper, not both")
        if config is not None:
            cfg = pipeline.RunConfig.from_toml(config)
            if model is not None:
                cfg = pipeline.RunConfig.from_dict({**cfg.to_dict(), "model": model}, str(config))
        else:
            cfg = pipeline.preset(model or "ssrf", paper=paper)
        sets = list(overrides or [])
        for key, value in (("epochs", epochs), ("seed", seed)):
            if value is not None:
                sets.append(f"train.{key}={value}")
        for key, text in (("device", device), ("loss", loss)):
            if text is not None:
                sets.append(f"train.{key}={json.dumps(text)}")
        cfg = cfg.override(sets) if sets else cfg
        if behavior_weights is not None:
            weights = pipeline.parse_behavior_weights(behavior_weights)
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, behavior_weights=weights))
        check_device(cfg.train.device)
        check_tracker(track)
        pipeline.check_out(out, resume)
        _threads(threads)
        prepared = pipeline.prepare(data, fmt, cfg.data, mapping=_mapping(map_spec, map_file), root=root)
        if paper and behavior_weights is None:
            cfg, dropped = pipeline.keep_known_behaviors(cfg, prepared)
            if dropped:
                typer.echo(
                    f"the paper's weights of {', '.join(dropped)}: not behaviours of this data", err=True
                )
        result = pipeline.train(prepared, cfg, out, resume=resume, track=track, track_dir=track_dir)
    except (DataError, ValueError) as exc:
        _fail(exc)
    from ssrf.training import distributed

    distributed.shutdown()  # every rank, after the last collective: gloo aborts at exit otherwise
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 alone reports
        return
    _report(result)


def _report(result: dict) -> None:
    """The results table, the training time and where the run folder is."""
    typer.echo(_results_table(result))
    typer.echo(
        f"\ntraining {result['train_seconds']:.1f} s ({result['epochs_run']} epochs, best "
        f"{result['best_epoch']}), test evaluation {result['test_eval_seconds']:.1f} s"
    )
    typer.echo(f"run folder: {result['run_dir']}")


@app.command("evaluate")
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="a run folder")],
    split: Annotated[str, typer.Option(help="test or valid")] = "test",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    base_run: Annotated[
        Path | None,
        typer.Option(
            "--base-run", help="also report RelaImpr (eq. 15) against this run's AUC (the paper: FM)"
        ),
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Evaluate a run's best model and print the results table; draw curves.png if the run lacks it."""
    from ssrf import pipeline

    try:
        result = pipeline.evaluate_run(run, split, device, overrides or ())
        curves = pipeline.write_curves(run)  # older runs get theirs now
        if base_run is not None:
            result[split]["rela_impr"] = pipeline.rela_impr_against(result, base_run, split)
    except (DataError, ValueError) as exc:
        _fail(exc)
    typer.echo(_results_table(result, split))
    if curves is not None:
        typer.echo(f"\ntraining curves: {curves}")


IndexOpt = Annotated[
    str,
    typer.Option(
        "--index",
        help="top-K retrieval: exact, or FAISS: faiss-flat, faiss-hnsw, faiss-ivf, with settings as "
        "faiss-hnsw:ef_search=1024,m=32 (dot-product models; others are scored exactly, and say why)",
    ),
]


def _index_line(predictor) -> str:
    info = predictor.index_info
    return f"top-K by {info.get('index')}" + (f" ({info['reason']})" if info.get("reason") else "")


def _cache_line(predictor) -> str:
    info = predictor.cache_info
    if not info["cached"]:
        return f"user cache: none ({info['reason']})"
    mb = info["memory_bytes"] / 2**20
    return f"user cache: {info['users']} users x {info['dim']} in {info['build_s']:.1f} s ({mb:.1f} MB)"


@app.command("recommend")
def recommend(
    run: Annotated[Path, typer.Option("--run", help="a run folder")],
    user: Annotated[list[str] | None, typer.Option("--user", help="raw user id (repeatable)")] = None,
    users_file: Annotated[
        Path | None, typer.Option("--users", help="a file with one raw user id a line")
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="how many items")] = 10,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="keep items already in the history")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="write CSV (.csv) or JSON lines (.jsonl) instead")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="users scored at once")] = 256,
    index: IndexOpt = "exact",
) -> None:
    """Top-K items for users of a trained run, from their stored histories; unknown users are skipped and
    named (with their line in --users)."""
    from tqdm import tqdm

    from ssrf.serving.predictor import Predictor

    try:
        ids = [(u, f"--user {u}") for u in user or []]
        if users_file is not None:
            ids += _read_users(users_file)
        if not ids:
            raise DataError("give --user ID or --users FILE")
        if out is not None:
            if out.suffix not in (".csv", ".jsonl"):
                raise DataError("--out must end in .csv or .jsonl", path=out)
            if not out.parent.is_dir():
                raise DataError("--out: the folder does not exist", path=out.parent)
        predictor = Predictor.load(run, index=index)
        typer.echo(_index_line(predictor), err=True)
        if not 1 <= k <= predictor.n_items:
            raise DataError(f"-k {k}: must be between 1 and {predictor.n_items} (the catalogue)")
        known, unknown = [], []
        for uid, where in ids:
            (known if predictor.knows_user(uid) else unknown).append((uid, where))
        for uid, where in unknown[:10]:
            typer.echo(f"skipped: unknown user {uid!r} ({where})", err=True)
        if len(unknown) > 10:
            typer.echo(f"skipped: {len(unknown) - 10} more unknown users", err=True)
        if not known:
            raise DataError(f"none of the {len(ids)} users is known to the model")
        rows = []
        for lo in tqdm(range(0, len(known), batch_size), disable=out is None or None, unit="batch"):
            chunk = [uid for uid, _ in known[lo : lo + batch_size]]
            for uid, recs in zip(chunk, predictor.recommend(chunk, k, include_seen), strict=True):
                rows += [
                    {
                        "user": uid,
                        "rank": r + 1,
                        "item": x.item,
                        "score": round(x.score, 6),
                        "category": x.category,
                    }
                    for r, x in enumerate(recs)
                ]
    except DataError as exc:
        _fail(exc)
    if predictor.nonfinite_scores:
        typer.echo(f"warning: {predictor.nonfinite_scores} users got non-finite scores (left out)", err=True)
    if out is None:
        from ssrf.reports.tables import markdown

        typer.echo(
            markdown(
                ["user", "rank", "item", "category", "score"],
                [[r["user"], r["rank"], r["item"], r["category"], f"{r['score']:.4f}"] for r in rows],
            )
        )
        return
    import csv

    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        if out.suffix == ".csv":
            writer = csv.DictWriter(fh, fieldnames=["user", "rank", "item", "score", "category"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    tmp.replace(out)
    skipped = f" ({len(unknown)} unknown users skipped)" if unknown else ""
    typer.echo(f"wrote {len(rows)} recommendations for {len(known)} users to {out}{skipped}")


def _read_users(path: Path) -> list[tuple[str, str]]:
    """(user id, "FILE:LINE") for each non-empty line of a users file; a clear error for a file that is
    missing, not UTF-8 text, or holds no id."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(f"cannot read the users file: {exc.strerror or exc}", path=path) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not a UTF-8 text file (byte {exc.start}): give one user id a line", path=path
        ) from None
    if "\x00" in text:
        raise DataError("not a text file (NUL bytes): give one user id a line", path=path)
    ids = [(line.strip(), f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not ids:
        raise DataError("the users file holds no user id (one a line)", path=path)
    return ids


@app.command("serve")
def serve(
    run: Annotated[Path, typer.Option("--run", help="a run folder")],
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="server processes (each loads the run)")] = 1,
    max_history: Annotated[int, typer.Option(min=1, help="events one request's history may carry")] = 1000,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="log each request")] = True,
    client_timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="seconds a client has to send a request's headers, and then its body (else 408, closed)",
        ),
    ] = 10.0,
    max_connections: Annotated[
        int, typer.Option(min=1, help="open connections per server process (more: 503, closed at once)")
    ] = 512,
    index: IndexOpt = "exact",
    user_cache_mb: Annotated[
        float,
        typer.Option(
            min=0,
            help="memory for every stored user's representation, computed at start so that a known user's "
            "request skips the forward pass (0: off; not built when over it)",
        ),
    ] = 512.0,
    rank_thread: Annotated[
        bool,
        typer.Option(
            "--rank-thread/--no-rank-thread",
            help="forward passes in a worker thread, the event loop reading requests meanwhile (default), "
            "or on the event loop (less hand-off; for --workers as many as the cores)",
        ),
    ] = True,
) -> None:
    """Serve recommendations over HTTP: POST /v1/recommend, /v1/recommend/batch; GET /healthz, /v1/model,
    /docs (FastAPI on uvicorn)."""
    from ssrf.serving.app import ServeSettings
    from ssrf.serving.predictor import Predictor
    from ssrf.serving.server import serve as run_server

    settings = ServeSettings(
        max_history=max_history,
        client_timeout_s=client_timeout,
        max_connections=max_connections,
        user_cache_mb=user_cache_mb,
        rank_thread=rank_thread,
    )
    try:
        # with several workers this process only checks the run (each worker builds its own user cache)
        predictor = Predictor.load(run, index=index, user_cache_mb=user_cache_mb if workers == 1 else 0)
        typer.echo(_index_line(predictor))
        if workers == 1:
            typer.echo(_cache_line(predictor))
        elif user_cache_mb > 0:
            typer.echo(f"user cache: built by each of the {workers} workers (up to {user_cache_mb:g} MB)")
    except DataError as exc:
        _fail(exc)
    typer.echo(f"serving {predictor.model_name} from {run} on http://{host}:{port} (API docs at /docs)")
    try:
        run_server(predictor, settings, host, port, workers, access_log)
    except DataError as exc:
        _fail(exc)


@app.command("export")
def export(
    run: Annotated[Path, typer.Option("--run", help="a run folder")],
    fmt: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="output file (default RUN/model.onnx)")] = None,
    check_users: Annotated[
        int, typer.Option(min=0, help="real users whose onnxruntime scores are checked against PyTorch's")
    ] = 32,
) -> None:
    """Export the run's scoring function: (user [B], items [B, n], behaviors [B, n]) -> scores [B, N+1]."""
    from ssrf.serving.export import export_onnx
    from ssrf.serving.predictor import Predictor

    try:
        if fmt != "onnx":
            raise DataError(f"unknown export format {fmt!r}; choose onnx")
        report = export_onnx(Predictor.load(run), out or run / "model.onnx", check_users=check_users)
        if report.max_abs_diff is not None and report.max_abs_diff > 1e-4:
            raise DataError(
                f"onnxruntime's scores differ from PyTorch's by {report.max_abs_diff:.2e} (> 1e-4)",
                path=report.path,
            )
    except DataError as exc:
        _fail(exc)
    typer.echo(
        f"wrote {report.path} (ONNX opset {report.opset}): user [B], items [B, {report.max_len}], "
        f"behaviors [B, {report.max_len}] -> scores [B, {report.n_items + 1}]"
    )
    if report.max_abs_diff is not None:
        typer.echo(
            f"onnxruntime matches PyTorch on {report.checked_users} users: "
            f"max |difference| {report.max_abs_diff:.1e}"
        )


def demo_config(epochs: int, paper: bool) -> RunConfig:
    """The RunConfig `ssrf demo` trains: SSRF's shipped preset (presets/ssrf.toml: full-softmax
    cross-entropy, the output tied to the input item and context tables, every behaviour weighted 1) for
    `epochs` epochs, all of them run (no early stopping: the best configuration we found on this subset), or
    with `paper` the published configuration (presets/paper.toml: loss bce with 3 uniformly sampled
    negatives, an untied output layer, loss weights 1:1:10 with `buy` at 10, the epoch kept by validation
    AUC with early stopping, patience 3)."""
    from ssrf import pipeline

    cfg = pipeline.preset("ssrf", paper=paper)
    return cfg.override([f"train.epochs={epochs}", *([] if paper else [f"train.patience={epochs}"])])


@app.command("demo")
def demo(
    root: Root = None,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 10,
    out: Annotated[Path | None, typer.Option(help="run folder (default runs/ssrf-<data>-s0-<time>)")] = None,
    threads: ThreadsOpt = None,
    paper: Annotated[
        bool,
        typer.Option(
            "--paper",
            help="the paper's configuration: loss bce with 3 sampled negatives, untied output, loss weights "
            "pv=1,fav=1,cart=1,buy=10, the epoch with the best validation AUC",
        ),
    ] = False,
) -> None:
    """Train SSRF on the embedded Taobao UserBehavior subset and print its statistics and test metrics.

    By default with full-softmax cross-entropy and the output tied to the input item and context tables
    (the best configuration we found); --paper trains exactly the published configuration instead: loss
    bce (eq. 13) with 3 sampled negatives, an untied output layer, loss weights 1:1:10 with the strongest
    behaviour (buy) at 10, and the epoch selected (early stopping) on validation AUC."""
    from ssrf import pipeline
    from ssrf.reports.tables import dataset_stats

    try:
        pipeline.check_out(out)
        _threads(threads)
        prepared = pipeline.prepare([pipeline.demo_data_path()], pipeline.DEMO_FORMAT, root=root)
        typer.echo(dataset_stats({**prepared.meta, "path": str(prepared.path)}) + "\n")
        result = pipeline.train(prepared, demo_config(epochs, paper), out)
    except DataError as exc:
        _fail(exc)
    _report(result)


def _prepare_only(
    specs: dict[str, DatasetSpec], chosen: list[str], data_root: Path | None, cache_dir: Path | None
) -> None:
    """`--parts table1`: prepare each chosen dataset (cleaning, the user sample, k-core, the split) and print
    its Table I row, dropped rows by reason and the prepared folder; nothing is trained."""
    from ssrf import pipeline
    from ssrf.reports.tables import dataset_stats
    from ssrf.reproduce.datasets import default_data_root

    root = data_root if data_root is not None else default_data_root()
    for key in chosen:
        ds = specs[key]
        prepared = pipeline.prepare([root / f for f in ds.files], ds.fmt, ds.prepare, root=cache_dir)
        typer.echo(f"## {ds.title}\n\n{ds.note}\n")
        typer.echo(dataset_stats({**prepared.meta, "path": str(prepared.path)}) + "\n")


FilesOpt = "repeatable, or a comma list; relative to the working directory"


@app.command("reproduce")
def reproduce(
    out: Annotated[
        Path, typer.Option(help="report folder (REPORT.md, CSVs, PNGs; runs under OUT/runs)")
    ] = Path("reports/reproduction"),
    budget: Annotated[
        float,
        typer.Option(
            min=1,
            help="minutes the plan may take on this 2-core machine (it picks epochs, sweeps); the cost "
            "model is measured on the shared samples, so runs on your own full files take longer",
        ),
    ] = 240.0,
    quick: Annotated[
        bool, typer.Option("--quick", help="the smoke plan: every section in about 5 minutes")
    ] = False,
    runs: Annotated[
        Path | None, typer.Option(help="run folders (default OUT/runs); finished runs are reused")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="the shared data folder (default ../shared/data)")
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--cache-dir", help="where prepared folders go (default OUT/data)")
    ] = None,
    taobao: Annotated[
        list[str] | None,
        typer.Option(
            "--taobao", help=f"your Taobao UserBehavior.csv instead of the shared sample ({FilesOpt})"
        ),
    ] = None,
    retailrocket: Annotated[
        list[str] | None,
        typer.Option(
            "--retailrocket",
            help="your Retailrocket events.csv, item_properties_part1.csv, item_properties_part2.csv, "
            f"category_tree.csv (categories need the item_properties files; {FilesOpt})",
        ),
    ] = None,
    diginetica: Annotated[
        list[str] | None,
        typer.Option(
            "--diginetica",
            help="your Diginetica train-item-views.csv, train-purchases.csv, product-categories.csv "
            f"({FilesOpt})",
        ),
    ] = None,
    sample_users: Annotated[
        str | None,
        typer.Option(
            "--sample-users",
            help="users sampled (seeded, before k-core and the temporal cut) from each dataset given by "
            "files, e.g. taobao=21960,retailrocket=6040 (N or all). Defaults: the paper's Table I, taobao "
            "21960 and retailrocket 6040 (a row that looks copied from MovieLens-1M); diginetica: all",
        ),
    ] = None,
    no_sample: Annotated[
        bool, typer.Option("--no-sample", help="keep every user of the datasets given by files")
    ] = False,
    datasets: Annotated[
        str | None,
        typer.Option(
            "--datasets",
            help="run only these, a comma list of taobao, retailrocket, diginetica, beauty (default all; "
            "those not given by files use the shared samples)",
        ),
    ] = None,
    parts: Annotated[
        str,
        typer.Option(
            "--parts",
            help="all: the whole report; table1: only prepare the datasets and print Table I (cleaning, "
            "user sample, k-core, split; nothing trained)",
        ),
    ] = "all",
    jobs: Annotated[
        int, typer.Option(min=1, help="runs trained at once, each in its own process with one thread")
    ] = 1,
    plan_name: Annotated[
        str | None,
        typer.Option("--plan", help="full, default, small or quick, instead of the one --budget picks"),
    ] = None,
) -> None:
    """Reproduce the paper's experiments (Tables I-II, figures 2-5, Beauty, a verdict per claim): a report.

    On the shared samples by default; --taobao, --retailrocket and --diginetica run on your own full files
    instead, each with a seeded user sample of the paper's Table I size (--sample-users, --no-sample).
    Runs are content-addressed, so running the same command again continues an interrupted reproduction."""
    from ssrf.reproduce import plan_for
    from ssrf.reproduce import reproduce as run_reproduction
    from ssrf.reproduce.datasets import check_files, dataset_specs, default_data_root
    from ssrf.reproduce.options import pick_plan, plan_keys, reproduction_specs, selected_datasets

    logging.getLogger("ssrf.training").setLevel(logging.WARNING)  # the progress bar says where it is
    try:
        if parts not in ("all", "table1"):
            raise DataError(f"--parts must be all or table1, got {parts!r}")
        chosen = selected_datasets(datasets)
        plan = (
            pick_plan(budget * jobs, quick, chosen, plan_name)
            if parts == "all" and (datasets or plan_name)
            else plan_for(budget * jobs, quick)
        )
        b_users = plan.beauty_sample_users
        specs = reproduction_specs(taobao, retailrocket, diginetica, sample_users, no_sample, b_users)
        root_dir = data_root if data_root is not None else default_data_root()
        check_files(
            specs or dataset_specs(b_users), chosen if parts == "table1" else plan_keys(plan), root_dir
        )
        if parts == "table1":
            _prepare_only(specs or dataset_specs(b_users), chosen, data_root, root or out / "data")
            return
        summary = run_reproduction(
            out,
            budget,
            quick,
            plan=plan,
            runs_dir=runs,
            data_root=data_root,
            cache_dir=root,
            specs=specs,
            jobs=jobs,
            command=" ".join(["ssrf", *sys.argv[1:]]),
        )
    except DataError as exc:
        _fail(exc)
    typer.echo(
        f"wrote {summary.report} (plan {summary.plan.name}: {summary.trained} runs trained, "
        f"{summary.reused} reused, {summary.wall_seconds / 60:.1f} min)"
    )
    if summary.missing_models:
        typer.echo("models of the paper not in the registry: " + ", ".join(summary.missing_models))


@app.command("tune")
def tune(
    data: Annotated[list[Path], typer.Option("--data", help="raw file(s) or a prepared folder")],
    fmt: FormatOpt = "taobao",
    model: Annotated[str, typer.Option(help="a registered model (`ssrf models` lists them)")] = "ssrf",
    space: Annotated[
        Path | None,
        typer.Option(
            help="search-space TOML: section.option = {low, high[, log, step]} or {choices = [...]} "
            "(default: the model family's, src/ssrf/tuning/spaces)"
        ),
    ] = None,
    trials: Annotated[
        int, typer.Option(min=1, help="trials the study should hold (those of earlier calls count)")
    ] = 20,
    timeout: Annotated[
        float | None, typer.Option(min=0.001, help="seconds after which no new trial starts")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="worker processes sharing the study, one thread each")] = 1,
    study_dir: Annotated[
        Path | None,
        typer.Option(
            "--study-dir",
            help="the study (study.log), trials/, best.toml, TUNE.md; the same command again continues it "
            "(default runs/tune-<model>)",
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option(min=0, help="retrain the best configuration on this many seeds (reads test once)")
    ] = 0,
    overrides: SetOpt = None,
    map_spec: MapSpec = None,
    map_file: MapFile = None,
    root: Root = None,
    seed: Annotated[int, typer.Option(min=0, help="seed of the sampler (TPE)")] = 0,
    startup_trials: Annotated[
        int | None,
        typer.Option(min=1, help="random trials before TPE models the space (default trials/4, 2 to 10)"),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune/--no-prune",
            help="stop a trial whose best so far is below the median of the complete trials' best at "
            "the same epoch",
        ),
    ] = True,
    prune_warmup: Annotated[int, typer.Option(min=0, help="a trial's first epochs, never pruned")] = 1,
    threads: ThreadsOpt = None,
) -> None:
    """Search a model's hyperparameters with Optuna (TPE, median pruning) on validation alone; write the
    best configuration (best.toml, for `ssrf train --config`) and TUNE.md.

    The base configuration is the model's shipped preset with the --set overrides; each trial trains it with
    the sampled options to early stopping without reading the test split. The study is stored in
    --study-dir: the same command again continues it."""
    from ssrf.tuning import check
    from ssrf.tuning import tune as run_tuning
    from ssrf.tuning.report import params_text

    try:
        check(data, model, space, trials, timeout, jobs, seeds, study_dir, overrides or (), startup_trials)
        if jobs == 1:  # each of several workers has one thread
            _threads(threads)
        summary = run_tuning(
            data,
            fmt,
            model,
            space=space,
            trials=trials,
            timeout=timeout,
            jobs=jobs,
            study_dir=study_dir,
            seeds=seeds,
            overrides=overrides or (),
            cache_dir=root,
            mapping=_mapping(map_spec, map_file),
            seed=seed,
            startup_trials=startup_trials,
            prune=prune,
            prune_warmup=prune_warmup,
            command=" ".join(["ssrf", *sys.argv[1:]])
            if Path(sys.argv[0]).stem in ("ssrf", "__main__")
            else None,
        )
    except DataError as exc:
        _fail(exc)
    typer.echo(
        f"{summary.trials} trials ({summary.complete} complete, {summary.pruned} pruned, {summary.failed} "
        f"failed) in {summary.wall_seconds / 60:.1f} min"
    )
    if summary.best_trial is not None:
        typer.echo(
            f"best: trial {summary.best_trial}, valid {summary.metric} {summary.best_value:.4f} "
            f"({params_text(summary.best_params)})"
        )
        typer.echo(f"best configuration: {summary.best_toml}")
    for r in summary.retrains:
        typer.echo(f"retrained with seed {r['seed']}: test {summary.metric} {r['test'][summary.metric]:.4f}")
    typer.echo(f"report: {summary.report}")


@app.command("models")
def models() -> None:
    """List the registered model names, one per line."""
    from ssrf.models import REGISTRY

    typer.echo("\n".join(REGISTRY))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    app()


if __name__ == "__main__":
    main()
