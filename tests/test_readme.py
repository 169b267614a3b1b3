"""The README matches what runs.

(a) Every `.venv/bin/ssrf ...` (or `-m ssrf ...`) line of its ```bash blocks names a real subcommand, only
options that the subcommand's `--help` lists, and parses; every path it names under ../shared/data/, configs/
or src/ exists, and so do the files and anchors of its links into the repository.
(b) The cheap commands run for real, in a temporary folder (`--cache-dir` there, `--epochs 1`): `models`,
`data stats`, `data prepare`, the `train` lines on the Taobao sample, then `evaluate` and `recommend` on those
runs; the service answers the README's curl examples with the same fields, warnings and errors.
(c) The Python example runs (its paths in the temporary folder, one epoch) and prints what it says.

Slow or blocking commands (`demo`, `serve`, `export`, `reproduce`, training on Beauty) are only checked as in
(a). Without ../shared/data the shared-data paths are skipped, and the Taobao sample is replaced by the
embedded subset of the same file."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from ssrf import pipeline
from ssrf.cli import app

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SHARED = REPO.parent / "shared" / "data"
TAOBAO = "../shared/data/taobao-userbehavior/UserBehavior_head100k.csv"
REPO_PATHS = ("../shared/data/", "configs/", "src/")
SLOW = {"demo", "serve", "export", "reproduce"}  # checked, not run
runner = CliRunner()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, re.S | re.M)


def joined(text: str) -> list[str]:
    """The block's lines with backslash continuations joined."""
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def variables() -> dict[str, str]:
    """`NAME=value` lines of the bash blocks (e.g. T=../shared/...)."""
    found = (re.fullmatch(r"([A-Z_]+)=(\S+)(\s+#.*)?", line) for b in blocks("bash") for line in joined(b))
    return {m[1]: m[2] for m in found if m}


def ssrf_lines() -> list[list[str]]:
    """The argv (after `ssrf`) of each command line that runs ssrf, variables expanded, comments dropped."""
    env = variables()
    out = []
    for line in (line for b in blocks("bash") for line in joined(b)):
        words = shlex.split(re.sub(r"\$([A-Z_]+)", lambda m: env[m[1]], line), comments=True)
        if words[:1] == [".venv/bin/ssrf"]:
            out.append(words[1:])
        elif "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["ssrf"]:
            out.append(words[words.index("-m") + 2 :])
    return out


def resolve(argv: list[str]) -> tuple[list[str], Any, list[str]]:
    """(subcommand path, its click command (typer's own copy of click), the remaining arguments)."""
    cmd = typer.main.get_command(app)
    path = []
    while hasattr(cmd, "commands"):  # a group
        assert argv and argv[0] in cmd.commands, f"not a subcommand: ssrf {' '.join([*path, *argv[:1]])}"
        path.append(argv[0])
        cmd, argv = cmd.commands[argv[0]], argv[1:]
    return path, cmd, argv


def help_text(path: list[str]) -> str:
    res = runner.invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output
    return res.output


def test_readme_commands_name_real_subcommands_options_and_paths():
    lines = ssrf_lines()
    assert len(lines) >= 15
    for argv in lines:
        path, cmd, args = resolve(argv)
        shown = help_text(path)
        for word in args:
            if re.fullmatch(r"--?[a-z][\w-]*(=.*)?", word):
                opt = word.split("=", 1)[0]
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", shown), f"ssrf {argv}: {opt}"
        if "..." not in args:  # parses: required options given, values of the right types, no stray words
            cmd.make_context(" ".join(["ssrf", *path]), list(args))
    words = [w for argv in lines for w in argv]
    words += re.findall(r"`((?:configs|src)/[^`\s]*)`", README)  # paths named in the prose
    words += re.findall(r"\"(\.\./shared/data/[^\"]+)\"", "".join(blocks("python")))
    for word in words:
        if word.startswith(REPO_PATHS) and (SHARED.is_dir() or not word.startswith("../shared/")):
            assert (REPO / word).exists(), f"the README names {word}, which does not exist"


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_point_at_files_and_headings():
    for target in re.findall(r"\]\(([^)#\s:]+)(#[^)\s]*)?\)", README):
        path, frag = target
        assert (REPO / path).exists(), path
        if frag:
            headings = re.findall(r"^#+ (.*)$", (REPO / path).read_text(), re.M)
            assert frag[1:] in {anchor(h) for h in headings}, f"{path}{frag}"
    for frag in re.findall(r"\]\(#([^)]+)\)", README):
        assert frag in {anchor(h) for h in re.findall(r"^#+ (.*)$", README, re.M)}, frag


def local(word: str) -> str | None:
    """A README path for a run in the temporary folder: the repository's files by absolute path, the Taobao
    sample replaced by the embedded subset when the shared data is absent (None: a file not available)."""
    if word == TAOBAO and not SHARED.is_dir():
        return str(pipeline.demo_data_path())
    if word.startswith("../shared/") and not SHARED.is_dir():
        return None
    return str((REPO / word).resolve()) if word.startswith(REPO_PATHS) else word


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory):
    """Run the README's cheap commands in a temporary working folder; {" ".join(argv): result}."""
    work = tmp_path_factory.mktemp("readme")
    threads = torch.get_num_threads()
    results: dict[str, object] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # runs/, users.txt, recs.csv, data/processed: all in `work`
        mp.setenv("SSRF_DATA_DIR", str(work / "cache"))
        mp.setenv("OMP_NUM_THREADS", "1")
        (work / "users.txt").write_text("100\nnobody\n")
        for argv in ssrf_lines():
            path, _, args = resolve(argv)
            words = [local(w) for w in args]
            if path[0] in SLOW or "..." in args or None in words:
                continue
            if path[0] == "train" and any("beauty" in str(w).lower() for w in words):
                continue  # minutes on this machine
            runs = [v for o, v in itertools.pairwise(words) if o in ("--run", "--base-run")]
            if not all(Path(v).is_dir() for v in runs):
                continue  # a run that was not trained here
            if path[0] == "train":
                if "--epochs" in words:
                    del words[words.index("--epochs") : words.index("--epochs") + 2]
                words += ["--epochs", "1"]
            if path[0] in ("train", "data"):
                words += ["--cache-dir", str(work / "cache")]
            res = runner.invoke(app, [*path, *words])
            assert res.exit_code == 0, f"ssrf {' '.join(argv)}:\n{res.output}"
            results[" ".join(argv)] = res
        snippet = "".join(blocks("python")).replace("train.epochs=5", "train.epochs=1")
        for word in set(re.findall(r"\"(\.\./shared/data/[^\"]+)\"", snippet)):
            assert local(word) is not None
            snippet = snippet.replace(f'"{word}"', repr(local(word)))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(snippet, "README.md (python)", "exec"), {})
        results["python"] = printed.getvalue()
        yield work, results
    torch.set_num_threads(threads)


def test_cheap_readme_commands_run(ran):
    work, results = ran
    names = {" ".join(resolve(key.split())[0]) for key in results if key != "python"}
    assert {"models", "data prepare", "train", "evaluate", "recommend"} <= names, names
    outputs = {key: res.output for key, res in results.items() if key != "python"}
    assert "autoint" in outputs["models"] and "ssrf-uc" in outputs["models"]
    for key, out in outputs.items():
        if key.startswith("train"):
            run = Path(key.split("--out ")[1].split()[0])
            assert "using 1 thread (OMP_NUM_THREADS" in out and f"run folder: {run}" in out
            assert (work / run / "data" / "vocab.json").is_file() and not (work / run / "vocab.json").exists()
            config = json.loads((work / run / "config.json").read_text())
            assert set(config["data_files"]) == {p.name for p in (work / run / "data").iterdir()}
        if key.startswith("data stats"):
            assert "rows read" in out and "split (" in out
        if key.startswith("recommend") and "--users" in key:
            assert "skipped: unknown user 'nobody' (users.txt:2)" in out
            assert (work / "recs.csv").read_text().startswith("user,rank,item,score,category")


def test_readme_python_example_prints_what_it_says(ran):
    printed = ran[1]["python"].splitlines()
    assert printed[0].startswith("{'users': ") and "'categories'" in printed[0]  # Table I
    assert printed[1].startswith("{'auc': ") and printed[1] == printed[2]  # test, then re-evaluated
    assert len(printed) == 8 and all(len(line.split()) == 3 for line in printed[3:])  # item category score


def curls() -> list[tuple[str, str, dict | None, str | None, dict]]:
    """(method, path, body, content type, the answer the README shows) of each `$ curl` example."""
    out = []
    for block in blocks("console"):
        lines = joined(block)
        for cmd, shown in itertools.pairwise(lines):
            if not cmd.startswith("$ curl"):
                continue
            words = shlex.split(cmd[2:])
            url = next(w for w in words if w.startswith("localhost:"))
            body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
            header = words[words.index("-H") + 1] if "-H" in words else None
            form = "application/x-www-form-urlencoded"  # what curl -d sends without -H
            ctype = header.split(":", 1)[1].strip() if header else body and form
            out.append(("POST" if body else "GET", url.split("/", 1)[1], body, ctype, json.loads(shown)))
    return out


def shape(answer):
    """An answer with the parts that depend on the trained weights (item ids, scores) left out."""
    if isinstance(answer, dict):
        return {k: len(v) if k == "items" else shape(v) for k, v in answer.items()}
    return [shape(x) for x in answer] if isinstance(answer, list) else answer


def test_service_answers_the_readme_curls(ran):
    from fastapi.testclient import TestClient

    from ssrf.serving.app import create_app
    from ssrf.serving.predictor import Predictor

    examples = curls()
    assert len(examples) >= 5
    # the README serves the demo; a run on the same Taobao rows knows the same users and items
    run = ran[0] / "runs" / "taobao"
    with TestClient(create_app(Predictor.load(run))) as client:
        for method, path, body, ctype, shown in examples:
            if method == "GET":
                got = client.get(f"/{path}")
            else:  # the body as curl -d sends it, with the README's Content-Type (curl's default without -H)
                got = client.post(f"/{path}", content=json.dumps(body), headers={"Content-Type": ctype})
            assert shape(got.json()) == shape(shown), (path, body)
