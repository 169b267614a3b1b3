"""`ssrf tune`: a hyperparameter search on Optuna (TPE sampling, median pruning), stored on disk.

    from ssrf.tuning import tune
    summary = tune(["UserBehavior.csv"], "taobao", "sasrec", trials=8, jobs=2, study_dir="runs/tune-sasrec")
    print(summary.best_params, summary.report)        # runs/tune-sasrec/TUNE.md

How it runs:
- the base configuration is the model's shipped preset (`pipeline.preset`) with `overrides` (`--set`); the
  search space (`spaces.py`) is a TOML file, by default the shipped one of the model's family;
- each trial is `pipeline.train(data, cfg, <study_dir>/trials/<number>, test=False)`: a run to early
  stopping (patience) or the epoch cap that never reads the test split; its objective is the run's best
  validation `train.metric` (maximised). After every epoch the validation metric is reported to the
  pruner (`pruning.MedianOfRuns`, Optuna's median rule made fair to runs that stopped early), which stops
  a trial whose best so far is below the median of the complete trials' best up to the same epoch. Each
  trial records how it stopped: patience, the epoch cap, the pruner, an error, or interrupted;
- the study lives in `<study_dir>/study.log`, Optuna's journal storage (an append-only file, written
  under a file lock: Optuna's recommended storage for several processes of one machine). Running the same
  call again continues it: `trials` counts every trial the study finished (complete, pruned, failed), and
  a trial a kill left running is marked failed (`interrupted`) and retried with the same parameters under
  a new number. `<study_dir>/tune.lock` keeps a second tuning off a study that one is running;
- `jobs` > 1 runs that many worker processes (one PyTorch thread each) on the one study; a worker asks for
  its next trial under a lock, so the study never holds more than `trials` trials;
- at the end: `best.toml` (the best trial's whole configuration, a preset `ssrf train --config` reads),
  with `seeds` > 0 that configuration retrained on that many seeds (these runs read the test split, once,
  after the choice is made), Optuna's plots and `TUNE.md`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ssrf import pipeline
from ssrf.core import DataError, atomic_write_text
from ssrf.dataset.artifacts import Prepared
from ssrf.io import GenericMapping
from ssrf.tuning import report
from ssrf.tuning.spaces import Dimension, Space, apply_params, load_space, option_value

__all__ = ["TuneSummary", "check", "make_sampler", "tune", "worker_seed"]

log = logging.getLogger(__name__)

STUDY_NAME = "ssrf-tune"
STORAGE_FILE = "study.log"
LOCK_FILE = "tune.lock"  # shared by a tuning's processes; exclusive for the start-up of a tuning
ASK_LOCK_FILE = "ask.lock"  # held while a worker counts the study's trials and takes a new one
BEST_TOML = "best.toml"
PRUNER_STARTUP = 2  # complete trials before the pruner stops any
NOT_IDENTITY = ("device", "checkpoint_every")  # train options a continued study may change


@dataclass
class TuneSummary:
    study_dir: Path
    report: Path  # TUNE.md
    best_toml: Path | None  # None while no trial is complete
    best_trial: int | None
    best_value: float | None  # the best trial's best validation metric
    best_params: dict[str, Any]
    metric: str
    trials: int  # every trial of the study
    complete: int
    pruned: int
    failed: int  # errors and interrupted trials
    wall_seconds: float
    retrains: list[dict[str, Any]] = field(default_factory=list)  # results.json of each seed's retrain


# ------------------------------------------------------------------------------------------------ locks


@contextlib.contextmanager
def _flock(path: Path, exclusive: bool, blocking: bool = True) -> Iterator[int]:
    """An advisory lock on `path` (released by the kernel when the process dies); yields the open file."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            yield fd
            return
        flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            raise DataError(
                "another `ssrf tune` is running on this study (or its workers are still stopping); wait for "
                "it, or give another --study-dir",
                path=path.parent,
            ) from None
        yield fd
    finally:
        os.close(fd)


def _share(fd: int) -> None:
    """Turn an exclusive lock into a shared one (the tuning's workers take shared ones too)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return
    fcntl.flock(fd, fcntl.LOCK_SH)


# ------------------------------------------------------------------------------------------------ study


def _storage(study_dir: Path):
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # before Optuna 5
        return JournalStorage(JournalFileBackend(str(study_dir / STORAGE_FILE)))


def _counted(t: Any) -> bool:
    """Whether a trial counts toward `trials`: finished (complete, pruned, failed by an error) or running;
    not one a kill interrupted (it is retried) nor one waiting in the queue."""
    from optuna.trial import TrialState

    if t.state == TrialState.FAIL:
        return not t.user_attrs.get("interrupted")
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def _interrupt(study: Any, trial: Any, keys: Sequence[str]) -> None:
    """Mark a trial a kill (or Ctrl-C) left running as failed, `interrupted`, and queue its parameters
    again (under a new number)."""
    from optuna.trial import TrialState

    storage = study._storage
    storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
    storage.set_trial_user_attr(trial._trial_id, "stopped", "interrupted")
    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    params = dict(trial.params)
    if params and set(params) == set(keys):
        study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
    log.info("trial %d: interrupted by an earlier stop; marked failed and queued again", trial.number)


def _identity(model: str, base: pipeline.RunConfig, space: Space) -> dict[str, str]:
    raw = base.to_dict()
    for k in NOT_IDENTITY:
        raw["train"].pop(k, None)
    return {
        "model": model,
        "base_config": json.dumps(raw, sort_keys=True),
        "space": json.dumps(space.to_dict(), sort_keys=True),
    }


def _check_same(study: Any, expected: dict[str, str], study_dir: Path) -> None:
    """A `DataError` unless the stored study was started with the same model, base config, space (data)."""
    attrs = study.user_attrs
    differ = [k.replace("_", " ") for k, v in expected.items() if k in attrs and attrs[k] != v]
    if differ:
        raise DataError(
            f"the study here was started with another {', '.join(differ)}: its trials would not compare with "
            "this call's; give another --study-dir (or the same options to continue it)",
            path=study_dir,
        )


# ------------------------------------------------------------------------------------------------ workers


class _Orphaned(BaseException):
    """The tuning's main process is gone: a worker stops (its trial is retried by the next call)."""


@dataclass(frozen=True)
class _WorkerArgs:
    study_dir: str
    data_path: str
    base: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    trials: int
    deadline: float | None  # time.time() after which no trial starts
    sampler_seed: int
    startup_trials: int
    prune: bool
    prune_warmup: int
    parent_pid: int | None  # set in a worker process: it stops when its parent is gone
    log_level: int | None  # a worker process configures logging at this level (None: leaves it)


def worker_seed(seed: int, worker: int, done: int) -> int:
    """The sampler seed of worker `worker` of a call that found `done` trials in the study: workers (and
    calls continuing a study) draw different random trials, reproducibly."""
    import numpy as np

    return int(np.random.SeedSequence([seed, worker, done]).generate_state(1)[0])


def make_sampler(seed: int, startup_trials: int):
    """TPE: `startup_trials` random trials first, then the multivariate model of the space; running trials
    of other workers count as bad ones (the constant liar), so parallel workers spread out."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # before Optuna 5
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup_trials, multivariate=True, constant_liar=True
        )


def _make_study(args: _WorkerArgs):
    import optuna

    sampler = make_sampler(args.sampler_seed, args.startup_trials)
    from ssrf.tuning.pruning import MedianOfRuns

    pruner = MedianOfRuns(PRUNER_STARTUP, args.prune_warmup) if args.prune else optuna.pruners.NopPruner()
    storage = _storage(Path(args.study_dir))
    return optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner)


def _work_in_process(args: _WorkerArgs) -> int:
    """A worker process: one PyTorch thread, a shared hold on the study's lock, then `_work`."""
    import torch

    torch.set_num_threads(1)
    if args.log_level is not None:
        logging.basicConfig(level=args.log_level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("ssrf.training").setLevel(logging.WARNING)
    with _flock(Path(args.study_dir) / LOCK_FILE, exclusive=False):
        return _work(args, Prepared.load(args.data_path))


def _work(args: _WorkerArgs, data: Prepared) -> int:
    """Take trials from the study until it holds `args.trials` of them (or the deadline); how many it ran."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _make_study(args)
    base = pipeline.RunConfig.from_dict(args.base)
    ran = 0
    try:
        while True:
            if args.deadline is not None and time.time() >= args.deadline:
                break
            if args.parent_pid is not None and os.getppid() != args.parent_pid:
                break
            with _flock(Path(args.study_dir) / ASK_LOCK_FILE, exclusive=True):
                if sum(map(_counted, study.get_trials(deepcopy=False))) >= args.trials:
                    break
                trial = study.ask()
                try:
                    params = {d.key: d.suggest(trial) for d in args.dimensions}
                except BaseException:
                    _interrupt(study, trial, [d.key for d in args.dimensions])
                    raise
            _run_trial(study, trial, params, base, data, args)
            ran += 1
    except _Orphaned:
        pass
    return ran


def _run_trial(
    study: Any,
    trial: Any,
    params: dict[str, Any],
    base: pipeline.RunConfig,
    data: Prepared,
    args: _WorkerArgs,
) -> None:
    import optuna
    from optuna.trial import TrialState

    metric = base.train.metric
    keys = [d.key for d in args.dimensions]
    shown = report.params_text(params)
    values: list[float] = []
    t0 = time.perf_counter()

    def attrs(**kw: Any) -> None:
        kw["seconds"] = round(time.perf_counter() - t0, 2)
        if values:
            best = max(range(len(values)), key=lambda i: (not math.isnan(values[i]), values[i]))
            kw.setdefault("best_valid", values[best])
            kw.setdefault("best_epoch", best + 1)
            kw.setdefault("epochs", len(values))
        for k, v in kw.items():
            trial.set_user_attr(k, v)

    def on_epoch(row: dict[str, Any]) -> None:
        value = float(row[f"valid_{metric}"])
        values.append(value)
        trial.report(value, int(row["epoch"]))
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            raise _Orphaned
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {row['epoch']}: {metric} {value:.4f} below the median")

    run_dir = Path(args.study_dir) / "trials" / str(trial.number)
    try:
        cfg = apply_params(base, params)
        result = pipeline.train(data, cfg, run_dir, on_epoch=on_epoch, test=False)
    except optuna.TrialPruned:
        attrs(stopped="pruner")
        study.tell(trial, state=TrialState.PRUNED)
        log.info(
            "trial %d: pruned at epoch %d (%s %.4f); %s", trial.number, len(values), metric, values[-1], shown
        )
    except (DataError, ValueError, RuntimeError, FloatingPointError) as exc:  # what a configuration can cause
        attrs(stopped="error", error=f"{type(exc).__name__}: {exc}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d: failed (%s); %s", trial.number, exc, shown)
    except BaseException:  # Ctrl-C, the parent gone: the trial is retried by the next call
        _interrupt(study, trial, keys)
        raise
    else:
        stopped = (
            "patience"
            if result["stopped_early"]
            else "time budget"
            if result["stopped_by_budget"]
            else "epoch cap"
            if result["trained"]
            else "nothing to train"
        )
        value = float(result["best_valid"][f"valid_{metric}"])
        attrs(stopped=stopped, best_valid=value, best_epoch=result["best_epoch"], epochs=result["epochs_run"])
        study.tell(trial, value)
        log.info(
            "trial %d: %s %.4f (%d epochs, stopped by %s); %s",
            trial.number,
            metric,
            value,
            result["epochs_run"],
            stopped,
            shown,
        )
    shutil.rmtree(run_dir / "resume", ignore_errors=True)  # a trial is never resumed: most of its bytes


# ------------------------------------------------------------------------------------------------ tune


def _check_args(trials: int, timeout: float | None, jobs: int, seeds: int, startup: int | None, warmup: int):
    checks = (
        (isinstance(trials, int) and trials >= 1, f"--trials {trials}: must be at least 1"),
        (timeout is None or (timeout > 0 and math.isfinite(timeout)), f"--timeout {timeout}: must be > 0"),
        (isinstance(jobs, int) and jobs >= 1, f"--jobs {jobs}: must be at least 1"),
        (isinstance(seeds, int) and seeds >= 0, f"--seeds {seeds}: must be 0 or more"),
        (startup is None or startup >= 1, f"--startup-trials {startup}: must be at least 1"),
        (isinstance(warmup, int) and warmup >= 0, f"--prune-warmup {warmup}: must be 0 or more"),
    )
    for ok, message in checks:
        if not ok:
            raise DataError(message)


def _check_data(base: pipeline.RunConfig, data: Prepared) -> None:
    """The checks `pipeline.train` makes of the config against the data, made once before any trial."""
    protocol = data.meta["split"]
    names = base.eval.metric_names(protocol)
    if base.train.metric not in names:
        raise DataError(
            f"train.metric = {base.train.metric!r}: not reported under {protocol}; choose {', '.join(names)}"
        )
    known = set(data.vocabs["behavior"].raw[1:])
    unknown = sorted({b for b, _ in base.train.behavior_weights} - known)
    if unknown:
        raise DataError(f"train.behavior_weights: unknown behaviour(s) {', '.join(unknown)} for this dataset")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command(
    data: Sequence[str | Path], fmt: str, model: str, space: str | Path | None, trials: int, **kw: Any
):
    """The `ssrf tune` command line these arguments amount to (for the report of an API call)."""
    parts = ["ssrf tune", *(f"--data {p}" for p in data), f"--format {fmt}", f"--model {model}"]
    parts += [f"--space {space}"] if space is not None else []
    parts += [f"--trials {trials}"]
    for name, value in kw.items():
        if name == "set":
            parts += [f"--set {v}" for v in value]
        elif value is not None:
            parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def check(
    data: Sequence[str | Path],
    model: str = "ssrf",
    space: str | Path | None = None,
    trials: int = 20,
    timeout: float | None = None,
    jobs: int = 1,
    seeds: int = 0,
    study_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    startup_trials: int | None = None,
    prune_warmup: int = 1,
) -> tuple[pipeline.RunConfig, Space, Path]:
    """`tune`'s checks of its options, which touch no data: a `DataError` naming the bad one; else the base
    config, the search space and the study folder."""
    from ssrf.training.loop import check_device

    _check_args(trials, timeout, jobs, seeds, startup_trials, prune_warmup)
    if not data:
        raise DataError("give --data: raw file(s) or a prepared folder")
    base = pipeline.preset(model)
    base = base.override(list(overrides)) if overrides else base
    check_device(base.train.device)
    dims = load_space(space, base)
    study_dir = Path(study_dir) if study_dir is not None else Path("runs") / f"tune-{model}"
    if study_dir.exists() and not study_dir.is_dir():
        raise DataError("--study-dir names a file, not a folder", path=study_dir)
    return base, dims, study_dir


def tune(
    data: Sequence[str | Path],
    fmt: str = "taobao",
    model: str = "ssrf",
    *,
    space: str | Path | None = None,
    trials: int = 20,
    timeout: float | None = None,
    jobs: int = 1,
    study_dir: str | Path | None = None,
    seeds: int = 0,
    overrides: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    mapping: GenericMapping | None = None,
    seed: int = 0,
    startup_trials: int | None = None,
    prune: bool = True,
    prune_warmup: int = 1,
    command: str | None = None,
) -> TuneSummary:
    """Search `model`'s hyperparameters on `data` (see the module's doc) and write the study's report.

    `space`: a search-space TOML (default: the model family's, `ssrf/tuning/spaces`); `trials`: how many
    trials the study should hold (those of earlier calls count); `timeout`: seconds after which no trial
    starts; `jobs`: worker processes, one thread each; `study_dir`: default `runs/tune-<model>`; `seeds`:
    retrain the best configuration on this many seeds (the base seed and the next ones; they read test);
    `overrides`: `section.key=value` on the model's preset; `seed`: the sampler's; `startup_trials`: random
    trials before TPE models the space (default a quarter of `trials`, 2 to 10); `prune`: stop trials below
    the median; `prune_warmup`: a trial's first epochs, never pruned. Every option is checked before any
    work (a `DataError` naming it)."""
    import optuna

    t_start = time.perf_counter()
    base, dims, study_dir = check(
        data, model, space, trials, timeout, jobs, seeds, study_dir, overrides, startup_trials, prune_warmup
    )
    startup = startup_trials if startup_trials is not None else min(10, max(2, trials // 4))
    command = command or _command(
        data,
        fmt,
        model,
        space,
        trials,
        timeout=timeout,
        jobs=jobs,
        study_dir=study_dir,
        seeds=seeds or None,
        set=list(overrides),
    )
    study_dir.mkdir(parents=True, exist_ok=True)
    verbosity = optuna.logging.get_verbosity()
    training_log = logging.getLogger("ssrf.training")
    training_level = training_log.level
    with _flock(study_dir / LOCK_FILE, exclusive=True, blocking=False) as lock:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        training_log.setLevel(logging.WARNING)  # a line per trial, not per epoch
        try:
            study, prepared = _open_study(study_dir, base, dims, data, fmt, mapping, cache_dir)
            _share(lock)  # the workers hold the lock with this process: no other tuning starts meanwhile
            done = sum(map(_counted, study.get_trials(deepcopy=False)))
            log.info(
                "tuning %s on %s: %d of %d trials done, %d to go (%s)",
                model,
                prepared.meta["key"],
                done,
                trials,
                max(trials - done, 0),
                study_dir,
            )
            args = _WorkerArgs(
                study_dir=str(study_dir),
                data_path=str(prepared.path),
                base=base.to_dict(),
                dimensions=dims.dimensions,
                trials=trials,
                deadline=None if timeout is None else time.time() + timeout,
                sampler_seed=0,
                startup_trials=startup,
                prune=prune,
                prune_warmup=prune_warmup,
                parent_pid=None,
                log_level=None,
            )
            _search(args, prepared, min(jobs, max(trials - done, 0)), seed, done)
            study = optuna.load_study(study_name=STUDY_NAME, storage=study._storage)
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                _interrupt(study, t, dims.keys)  # its worker died
            settings = {
                "sampler": f"TPE (seed {seed}, multivariate, constant liar; first {startup} trials random)",
                "pruner": "none"
                if not prune
                else f"median of the complete trials' best so far (after {PRUNER_STARTUP} complete trials, "
                f"from epoch {prune_warmup + 1}; see ssrf/tuning/pruning.py)",
                "workers": f"{jobs} process{'es, one thread each' if jobs > 1 else ''}",
                "timeout": "none" if timeout is None else f"{timeout:g} s (no trial starts after it)",
            }
            return _finish(study, study_dir, base, dims, prepared, seeds, jobs, command, t_start, settings)
        finally:
            optuna.logging.set_verbosity(verbosity)
            training_log.setLevel(training_level)


def _open_study(
    study_dir: Path,
    base: pipeline.RunConfig,
    dims: Space,
    data: Sequence[str | Path],
    fmt: str,
    mapping: GenericMapping | None,
    cache_dir: str | Path | None,
) -> tuple[Any, Prepared]:
    """The study in `study_dir` (created, or checked to be of the same model, base config, space and data)
    and the prepared data; trials an earlier call left running are marked interrupted and queued again.
    The caller holds the study's lock alone."""
    import optuna

    identity = _identity(base.model, base, dims)
    # the journal's own lock file, left by a process killed while appending, would hold every writer for
    # Optuna's 30-second grace period; no process uses the journal now
    (study_dir / f"{STORAGE_FILE}.lock").unlink(missing_ok=True)
    storage = _storage(study_dir)
    exists = STUDY_NAME in [s.study_name for s in storage.get_all_studies()]
    if exists:  # before preparing any data
        _check_same(optuna.load_study(study_name=STUDY_NAME, storage=storage), identity, study_dir)
    prepared = pipeline.prepare(data, fmt, base.data, mapping=mapping, root=cache_dir)
    _check_data(base, prepared)
    identity["dataset"] = prepared.meta["key"]
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=storage, direction="maximize", load_if_exists=True
    )
    _check_same(study, identity, study_dir)
    if not exists:
        for k, v in identity.items():
            study.set_user_attr(k, v)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        _interrupt(study, t, dims.keys)
    return study, prepared


@contextlib.contextmanager
def _quiet_bars() -> Iterator[None]:
    """No tqdm progress bars in the worker processes started meanwhile (several would interleave): they
    inherit TQDM_DISABLE, which tqdm reads when it is imported."""
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


def _search(args: _WorkerArgs, prepared: Prepared, workers: int, seed: int, done: int) -> None:
    """Run `workers` workers on the study: in this process for one, else in processes of one thread each.
    Each worker's sampler has its own seed (from `seed`, its index and the trials done before)."""

    def seeded(i: int, **kw: Any) -> _WorkerArgs:
        return dataclasses.replace(args, sampler_seed=worker_seed(seed, i, done), **kw)

    if workers <= 0:
        return
    if workers == 1:
        _work(seeded(0), prepared)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    level = logging.getLogger("ssrf").getEffectiveLevel() if logging.getLogger().handlers else None
    try:
        with _quiet_bars(), ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [
                pool.submit(_work_in_process, seeded(i, parent_pid=os.getpid(), log_level=level))
                for i in range(workers)
            ]
            for future in as_completed(futures):
                future.result()
    except BrokenProcessPool:
        raise DataError(
            "a tuning worker process died (out of memory?); run the same command again to continue the study"
        ) from None


def _retrain(
    prepared: Prepared, cfg: pipeline.RunConfig, root: Path, seeds: int, jobs: int
) -> list[dict[str, Any]]:
    """The best configuration trained on `seeds` seeds (base seed, +1, ...) in `root/seed-<s>`, test read
    once each; finished runs are reused."""
    runs = []
    for i in range(seeds):
        s = cfg.train.seed + i
        runs.append(
            (root / f"seed-{s}", dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=s)))
        )
    pending = [(d, c) for d, c in runs if not (d / "results.json").exists()]
    if jobs > 1 and len(pending) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with (
            _quiet_bars(),
            ProcessPoolExecutor(min(jobs, len(pending)), mp_context=mp.get_context("spawn")) as pool,
        ):
            list(
                pool.map(_retrain_in_process, [(str(prepared.path), c.to_dict(), str(d)) for d, c in pending])
            )
    else:
        for d, c in pending:
            pipeline.train(prepared, c, d, resume=d.exists() and any(d.iterdir()))
            shutil.rmtree(d / "resume", ignore_errors=True)
    return [json.loads((d / "results.json").read_text()) for d, _ in runs]


def _retrain_in_process(job: tuple[str, dict[str, Any], str]) -> None:
    import torch

    torch.set_num_threads(1)
    logging.getLogger("ssrf").setLevel(logging.WARNING)
    data_path, config, run_dir = job
    d = Path(run_dir)
    pipeline.train(
        Prepared.load(data_path),
        pipeline.RunConfig.from_dict(config),
        d,
        resume=d.exists() and any(d.iterdir()),
    )
    shutil.rmtree(d / "resume", ignore_errors=True)


def _finish(
    study: Any,
    study_dir: Path,
    base: pipeline.RunConfig,
    dims: Space,
    prepared: Prepared,
    seeds: int,
    jobs: int,
    command: str,
    t_start: float,
    settings: dict[str, str],
) -> TuneSummary:
    """best.toml, the retrains, the plots and TUNE.md."""
    from optuna.trial import TrialState

    metric = base.train.metric
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    best_toml, retrains = None, []
    if best is not None:
        cfg = apply_params(base, best.params)
        best_toml = study_dir / BEST_TOML
        header = [
            f"The best configuration `ssrf tune` found for {base.model} on {prepared.meta['key']}: trial "
            f"{best.number} of {study_dir},",
            f"validation {metric} {best.value:.4f}.",
            f"Train it with: ssrf train --config {best_toml} --data ...",
            f"Found by: {command}",
        ]
        atomic_write_text(best_toml, report.config_toml(cfg, header))
        loaded = pipeline.RunConfig.from_toml(best_toml)
        if json.dumps(loaded.to_dict(), sort_keys=True) != json.dumps(cfg.to_dict(), sort_keys=True):
            raise RuntimeError(
                f"{best_toml} does not read back as the best configuration"
            )  # pragma: no cover
        if seeds:
            log.info("retraining trial %d's configuration on %d seed(s)", best.number, seeds)
            retrains = _retrain(prepared, cfg, study_dir / "retrain" / f"trial-{best.number}", seeds, jobs)
    plots = report.write_plots(study, study_dir, f"best valid {metric}")
    wall = time.perf_counter() - t_start
    info = {
        "model": base.model,
        "dataset": prepared.meta["key"],
        "metric": metric,
        "command": command,
        "space": {d.key: d.describe() for d in dims.dimensions},
        "base_values": {k: option_value(base, k) for k in dims.keys},
        "settings": {**settings, "space file": dims.source},
        "wall_seconds": wall,
        "best_toml": BEST_TOML,
        "best_toml_path": str(best_toml),
        "storage": str(study_dir / STORAGE_FILE),
        "study_name": STUDY_NAME,
        "versions": {
            "ssrf": _version("ssrf"),
            "optuna": _version("optuna"),
            "torch": _version("torch"),
            "python": platform.python_version(),
        },
    }
    path = report.write_report(
        study_dir, study=study, info=info, keys=dims.keys, retrains=retrains, plots=plots
    )
    states = [t.state for t in trials]
    return TuneSummary(
        study_dir=study_dir,
        report=path,
        best_toml=best_toml,
        best_trial=None if best is None else best.number,
        best_value=None if best is None else best.value,
        best_params={} if best is None else dict(best.params),
        metric=metric,
        trials=len(trials),
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=states.count(TrialState.FAIL),
        wall_seconds=wall,
        retrains=retrains,
    )
