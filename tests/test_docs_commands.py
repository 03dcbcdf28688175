"""Every command shown in README.md and docs/*.md is run here or parse-checked by its program's own parser
(tests/doc_commands.py); a command that is neither fails `test_every_doc_command_is_parse_checked`.

The commands that are cheap on a CPU machine are also run as written (`RUNS`), in a scratch folder with the
repository's configs and demo shards: the demo, the own-folder example, verify and diff on its output, lint
and the hostile corpus; then the Python examples that read `out/demo`. Commands that need a cluster, an object
store, a GPU, the Hub or a long training run are only parse-checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, REPO, REQUIRE_CORPUS
from tests.doc_commands import (
    DATA_LANGS,
    DOCS,
    SHELL_LANGS,
    check_command,
    doc_commands,
    fenced_blocks,
    python_blocks,
    split_commands,
)


def test_every_doc_command_is_parse_checked(monkeypatch, capsys):
    commands = doc_commands()
    assert len(commands) > 20
    failures = []
    for cmd in commands:
        try:
            check_command(cmd, monkeypatch, frozenset(RUNS))
        except Exception as exc:  # noqa: BLE001 - collected and reported together
            failures.append(f"{cmd}\n    {type(exc).__name__}: {exc}")
    capsys.readouterr()
    assert not failures, "\n".join(failures)


def test_shell_blocks_are_valid_bash():
    for path in DOCS:
        for lang, body in fenced_blocks(path):
            if lang in SHELL_LANGS:
                done = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
                assert done.returncode == 0, f"{path.name}: {done.stderr}\n{body}"


def test_fenced_blocks_are_commands_python_or_data():
    """A block in another shell language (```zsh, ```powershell) would hold commands nothing checks."""
    for path in DOCS:
        for lang, _ in fenced_blocks(path):
            assert lang in SHELL_LANGS | {"python"} | DATA_LANGS, f"{path.name}: ```{lang} is neither checked nor data"


@pytest.mark.parametrize("text, says", [
    ("python -m jobs.tokenize --config configs/demo.yaml --inptu x --output o", "parsing exited with 2"),
    ("python -m jobs.tokenize --config configs/demo.yaml --input x --output o buckets.no_such_key=1",
     "unknown config key"),
    ("audiotok verify --tokens out/demo --count many --report r", "parsing exited with 2"),
    ("audiotok nosuch --x", "no command"),
    ("pip install --index-ulr https://example.invalid torch", "pip's parser refused"),
    ("pip install -e '.[nosuchextra]'", "no extra 'nosuchextra'"),
    ("ray job submit --working-dir . --runtime-env-json '{\"pip\": [\"soundfile\"]}' -- python -m jobs.tokenize "
     "--config configs/encodec_24khz.yaml --input s3://b/x.tar --output s3://b/o", "no s3fs"),
    ("ray job submitt -- x", "No such command"),
    ("python -m pytest --no-such-pytest-flag", "unrecognized arguments"),
    ("curl https://example.invalid", "no checker for `curl`"),
])
def test_a_wrong_command_fails_its_check(text, says, monkeypatch, capsys):
    """The checks can fail: a misspelt flag or command, an unknown config key, a bad pip option or extra, a
    missing s3fs, an unknown program."""
    (cmd,) = split_commands("test", text)
    with pytest.raises(Exception, match=re.escape(says)):
        check_command(cmd, monkeypatch)
    capsys.readouterr()


def test_readme_test_command_is_what_ci_runs():
    """CI (.ci/run) makes and activates the venv on lines of its own, then runs the README's test command with
    quiet pip installs."""
    shown = next(body for lang, body in fenced_blocks(REPO / "README.md") if lang in SHELL_LANGS and "pytest" in body)
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert "python3 -m venv .venv" in ci and ". .venv/bin/activate" in ci
    assert shown.strip() == "python3 -m venv .venv && . .venv/bin/activate && " + ci[-1].replace("pip install -q ",
                                                                                               "pip install ")


@pytest.mark.slow
@pytest.mark.parametrize("doc, code", [b for b in python_blocks() if "out/demo" not in b[1]],
                         ids=lambda v: v if isinstance(v, str) and v.endswith(".md") else "")
def test_standalone_python_examples_run(doc, code, tmp_path):
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"{doc}: {done.stderr[-3000:]}"


def test_python_examples_compile():
    for doc, code in python_blocks():
        compile(code, doc, "exec")


# ---- commands run as written ------------------------------------------------------------------------


def write_my_audio(work: Path):
    """A user's folder: three of the demo corpus's clips (real audio, within the demo codec's verify
    thresholds) in speaker subfolders, one with a transcript beside it."""
    import tarfile

    with tarfile.open(REPO / "demo" / "shards" / "demo-000.tar") as tar:
        for member, rel in (("cards-005.wav", "spk1/0001.wav"), ("librivox-0890.flac", "spk1/0002.flac"),
                            ("goforward.wav", "spk2/0001.wav")):
            path = work / "my_audio" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tar.extractfile(member).read())
    (work / "my_audio" / "spk1" / "0001.txt").write_text("a transcript")


def summary(out: Path) -> dict:
    return json.loads((out / "_summary.json").read_text())


def hostile_ready(work: Path) -> str | None:
    if CORPUS.is_dir():
        return None
    if REQUIRE_CORPUS:
        pytest.fail(f"test corpus {CORPUS} missing (AUDIOTOK_REQUIRE_CORPUS=1)")
    return f"test corpus {CORPUS} not available"


def demo_again(work: Path):
    shutil.copytree(work / "out" / "demo", work / "out" / "demo-again")  # a re-run gives the same rows


# command as shown -> (cwd: "work" or "repo", prepare(work) -> reason to skip or None, check(work, completed process))
RUNS = {
    "RAY_AUTH_MODE=disabled python -m jobs.tokenize --config configs/demo.yaml --input "
    "'demo/shards/demo-{000..001}.tar' --output out/demo": (
        "work", None,
        lambda w, p: summary(w / "out" / "demo")["rows"] == 7 and summary(w / "out" / "demo")["rejects"] == 1
        and summary(w / "out" / "demo")["verify"]["passed"] and (w / "out/demo/_verify/index.html").is_file()),
    "audiotok verify --tokens out/demo --count 20 --report out/demo-verify": (
        "work", None, lambda w, p: (w / "out/demo-verify/index.html").is_file() and '"passed": true' in p.stdout),
    "audiotok diff out/demo out/demo-again --report out/diff": (
        "work", demo_again, lambda w, p: (w / "out/diff/diff.json").is_file() and '"passed": true' in p.stdout),
    "audiotok tokenize --config configs/demo.yaml --input my_audio/ --output out/my_audio_tiny": (
        "work", write_my_audio, lambda w, p: summary(w / "out" / "my_audio_tiny")["rows"] == 3),
    "python -m tests.hostile_corpus out/hostile": (
        "work", hostile_ready,
        lambda w, p: (w / "out/hostile/hostile.jsonl").is_file() and "expected outcomes" in p.stdout),
    "python -m jobs.fit_kmeans --input my_audio/ --output out/hubert_base_l9_k50.safetensors --model "
    "random:hubert_base --layer 9 --k 50 --max-seconds 6 --batch-size 256 --steps 20": (
        "work", write_my_audio, lambda w, p: fitted_centroids(w / "out/hubert_base_l9_k50.safetensors", 50)),
    "ruff check .": ("repo", None, lambda w, p: True),
    # docs/semantic.md: centroids fitted on the demo's first shard, then a two-tokenizer job with them
    "python -m jobs.fit_kmeans --input demo/shards/demo-000.tar --output out/demo-k32.safetensors --model "
    "random:hubert_base --layer 9 --k 32 --max-seconds 12 --steps 20": (
        "work", None, lambda w, p: (w / "out" / "demo-k32.safetensors").is_file()),
    "RAY_AUTH_MODE=disabled python -m jobs.tokenize --config configs/audiolm_hubert_encodec_24khz.yaml --input "
    "demo/shards/demo-000.tar --output out/demo-audiolm model=random:24khz semantic.model=random:hubert_base "
    "semantic.centroids=out/demo-k32.safetensors device=cpu cpus_per_actor=1 verify.sample_count=2": (
        "work", None,
        lambda w, p: summary(w / "out" / "demo-audiolm")["rows"] == 4 and summary(w / "out" / "demo-audiolm")[
            "verify"]["passed"] and json.loads((w / "out/demo-audiolm/_verify/summary.json").read_text())[
            "streams"]["semantic"] == {"rows": 2, "mean_code_agreement": 1.0, "min_code_agreement": 1.0}),
}


def fitted_centroids(path: Path, k: int) -> bool:
    from codec.centroids import load_centroids

    centroids = load_centroids(path)
    return centroids.k == k and centroids.meta is not None and centroids.meta.layer == 9


def test_runs_are_shown_in_the_docs():
    shown = {cmd.text for cmd in doc_commands()}
    assert set(RUNS) <= shown, set(RUNS) - shown


@pytest.mark.slow
def test_cheap_doc_commands_run_as_written(tmp_path):
    """The demo first (the others read its output), then each cheap command, then the Python examples that
    read out/demo; each must exit 0 and leave what it promises."""
    for name in ("configs", "demo", "tests"):  # what the commands read from the checkout
        (tmp_path / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}  # as a user's shell
    env.update(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the venv's audiotok
    shown = {cmd.text for cmd in doc_commands()}
    skipped = []
    for text, (where, prepare, ok) in RUNS.items():  # dicts keep order: the demo runs first
        assert text in shown, f"{text} is no longer shown in the docs"
        if prepare and (reason := prepare(tmp_path)):
            skipped.append(f"{text}: {reason}")
            continue
        done = subprocess.run(["bash", "-c", text], cwd=tmp_path if where == "work" else REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and ok(tmp_path, done), f"{text}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for doc, code in python_blocks():
        if "out/demo" in code:
            done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, f"{doc}:\n{code}\n{done.stderr[-3000:]}"
    if skipped:
        pytest.skip("; ".join(skipped))
