"""Shared fixtures: the real data samples in `shared/data` beside the repository, and the hand-written tiny
inputs in tests/fixtures/tiny (their expected values are worked out in tests/fixtures/README.md).

The suite must not write into the checkout. Two things see to it:
- `SSRF_DATA_DIR` points at a folder of the session's temporary directory, so a prepare that forgets its
  `root` writes there rather than to `data/processed` in the working directory (a safety net only: tests
  pass `tmp_path`);
- the checkout guard: at the start of the session it lists the checkout's files that git reports (untracked
  and ignored ones included, caches left out) and at the end it lists them again; a path that appeared, an
  ignored file that changed or went away, or a tracked file that was clean and no longer is fails the run
  (exit status 1) and is printed. It needs git and a checkout whose top is the folder above tests/; without
  them it does nothing. `SSRF_CHECKOUT_GUARD=0` turns it off (say, while someone else edits the checkout
  during the run: their edits are indistinguishable from a test's)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# folders the suite may write in the checkout: caches of the tools it runs, and the environment
ALLOWED_FOLDERS = frozenset(
    {".pytest_cache", ".hypothesis", ".ruff_cache", ".import_linter_cache", "__pycache__", ".venv", ".git"}
)
Entry = tuple[str, tuple[int, int] | None]  # git's two-letter status, (mtime_ns, size) of a file
_BEFORE = pytest.StashKey[dict[str, Entry] | None]()  # the listing at the start
_WRITTEN = pytest.StashKey[list[str]]()  # what the guard found at the end


def _allowed(path: str) -> bool:
    return any(part in ALLOWED_FOLDERS or part.endswith(".egg-info") for part in Path(path).parts)


def checkout_files(repo: Path) -> dict[str, Entry] | None:
    """What `git status --porcelain --ignored --untracked-files=all` lists in `repo` (paths relative to it),
    outside the allowed folders, with each file's mtime and size; None when git or the checkout is missing
    (or `repo` is not the top of its checkout)."""
    if shutil.which("git") is None:
        return None

    def git(*args: str) -> bytes | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(os.fsdecode(top.strip())).resolve() != repo.resolve():
        return None
    listing = git("status", "--porcelain=v1", "-z", "--ignored", "--untracked-files=all")
    if listing is None:
        return None
    files: dict[str, Entry] = {}
    fields = iter(listing.split(b"\0"))
    for field in fields:
        if len(field) < 4:
            continue
        status, path = field[:2].decode(), os.fsdecode(field[3:])
        if "R" in status or "C" in status:
            next(fields, None)  # a rename's or copy's origin: the field after it
        if _allowed(path):
            continue
        try:
            st = os.lstat(repo / path)
            files[path] = (status, (st.st_mtime_ns, st.st_size))
        except OSError:
            files[path] = (status, None)
    return files


def written(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    """The paths the run wrote, as `<what> <path>` lines: new in the listing, an ignored file changed or
    removed. The further edits of a file that was already modified or untracked at the start are left
    alone (a person's work in progress)."""
    lines = [f"new      {p}" for p in sorted(after.keys() - before.keys())]
    for path, (status, stat) in sorted(before.items()):
        if status != "!!":
            continue
        if path not in after:
            lines.append(f"removed  {path}")
        elif after[path][1] != stat:
            lines.append(f"changed  {path}")
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    enabled = os.environ.get("SSRF_CHECKOUT_GUARD", "1") != "0"
    session.config.stash[_BEFORE] = checkout_files(REPO) if enabled else None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_BEFORE, None)
    if before is None:
        return
    after = checkout_files(REPO)
    if after is None:
        return
    lines = written(before, after)
    session.config.stash[_WRITTEN] = lines
    if lines and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_WRITTEN, [])
    if not lines:
        return
    terminalreporter.write_sep("=", "the suite wrote into the checkout", red=True, bold=True)
    terminalreporter.write_line(f"tests must write only under tmp_path; new or changed in {REPO}:")
    for line in lines:
        terminalreporter.write_line("  " + line)
    terminalreporter.write_line(
        "(if someone else wrote them during the run, run again; SSRF_CHECKOUT_GUARD=0 turns this check off)"
    )


@pytest.fixture(scope="session", autouse=True)
def _data_dir_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default cache of prepared datasets (`SSRF_DATA_DIR`, else data/processed in the working
    directory) is a folder of the session's temporary directory; subprocesses inherit it."""
    path = tmp_path_factory.mktemp("ssrf-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSRF_DATA_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data samples (read-only); tests that need it skip when it is not there."""
    path = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip(
            f"real data samples not found: expected the folder shared/data beside the repository root "
            f"({path.resolve()})"
        )
    return path


@pytest.fixture(scope="session")
def tiny() -> Path:
    """The hand-written tiny inputs, one or a few per format."""
    return TESTS / "fixtures" / "tiny"


@pytest.fixture(scope="session")
def serving_run(tmp_path_factory) -> Path:
    """A one-epoch SSRF run on 150 users of the embedded data, shared by the serving tests (read-only)."""
    from ssrf import pipeline
    from ssrf.dataset.prepare import PrepareConfig

    tmp = tmp_path_factory.mktemp("serve")
    data = pipeline.prepare(
        [pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=150, seed=1), root=tmp / "cache"
    )
    cfg = pipeline.RunConfig().override(["train.epochs=1", "model_options.d=16", "model_options.max_len=10"])
    pipeline.train(data, cfg, tmp / "run")
    return tmp / "run"
