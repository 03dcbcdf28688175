"""Every command shown in README.md and docs/*.md is run here or parse-checked by its program's own parser.

Commands come from the fenced `bash` blocks (split at `&&`, `||`, `;`, `|` and line ends) and from inline
spans that start with `python -m`, `audiotok` or `pip install`. Each one is parse-checked (`check_command`):
the entry points' and `python -m venv`'s argparse parsers (stopped right after parsing; `jobs.tokenize` also
loads the config with its overrides), pip's own option parser, Ray's `ray job submit` CLI (and its entry
point, and that the runtime env installs the storage driver and the Hub client the command needs), pytest's
option parser (`--collect-only` on this file), `compile` for `python -c`, awk's parser on empty input, and
`bash -n` for each block; shell tools must exist. A command whose program has no checker fails the test, so
a new command in the docs has to be covered here.

The commands that are cheap on a CPU machine are also run as written (`RUNS`), in a scratch folder with the
repository's configs and demo shards: the demo, the own-folder example, verify and diff on its output, lint,
the hostile corpus, and the Python examples (those reading `out/demo` after the demo). Commands that need a
cluster, an object store, a GPU, the Hub or a long training run are only parse-checked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CORPUS, REPO, REQUIRE_CORPUS

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", ">&", "<&", ">|"}
TOOLS = {"mkdir", "realpath", "tar", "tee", "cd", "export", "cp", ".", "source"}  # checked by bash -n and which
BUILTINS = {"cd", "export", ".", "source"}


@dataclass(frozen=True)
class Command:
    doc: str  # file name, for messages
    text: str  # the command as shown (env assignments included, redirections left out)
    argv: tuple[str, ...]  # without the leading NAME=value assignments
    env: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return f"{self.doc}: {self.text}"


def fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, body) of each fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), re.MULTILINE | re.DOTALL)


def split_commands(doc: str, block: str) -> list[Command]:
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"\d*>&\d+", " ", line)  # 2>&1
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        assert not re.search(r"<\w+>", line), f"{doc}: a placeholder in a command cannot be checked: {line}"
        words, skip_next, current = [], False, []
        for token in list(lexer) + [";"]:
            if skip_next:
                skip_next = False
            elif token in REDIRECTS:
                skip_next = True
            elif token in SEPARATORS:
                if current:
                    words.append(current)
                current = []
            else:
                current.append(token)
        for argv in words:
            env = []
            while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
                env.append(tuple(argv.pop(0).split("=", 1)))
            text = " ".join([f"{k}={shlex.quote(v)}" for k, v in env] + [shlex.quote(a) for a in argv])
            commands.append(Command(doc, text, tuple(argv), tuple(env)))
    return commands


INLINE = re.compile(r"(?<!`)`((?:python3? -m |audiotok |pip install )[^`]+)`(?!`)")


def doc_commands() -> list[Command]:
    out = []
    for path in DOCS:
        for lang, body in fenced_blocks(path):
            if lang in SHELL_LANGS:
                out += split_commands(path.name, body)
        prose = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
        for span in INLINE.findall(prose):  # a command, not a name: pip install, or a program with options
            words = span.split()
            options = words[3:] if words[0].startswith("python") else words[2:]
            if span.startswith("pip install") or any(w.startswith("-") for w in options):
                out += split_commands(path.name, span)
    return out


def python_blocks() -> list[tuple[str, str]]:
    return [(path.name, body) for path in DOCS for lang, body in fenced_blocks(path) if lang == "python"]


# ---- parse checks -------------------------------------------------------------------------------------


class Parsed(BaseException):  # not Exception: venv's __main__ catches those
    def __init__(self, namespace: argparse.Namespace):
        self.namespace = namespace


def parse_only(run, monkeypatch) -> argparse.Namespace:
    """Call `run` with ArgumentParser.parse_args stopping right after parsing; a parse error fails."""
    real = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):
        raise Parsed(real(self, args, namespace))

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", stop)
        try:
            run()
        except Parsed as done:
            return done.namespace
        except SystemExit as exc:
            raise AssertionError(f"argument parsing exited with {exc.code}") from None
    raise AssertionError("the command never reached its argument parser")


def check_python_module(module: str, args: list[str], monkeypatch) -> str:
    if not (module.startswith("jobs.") or module == "venv"):
        raise AssertionError(f"no parse check for `python -m {module}`; run it (RUNS) or add a checker")

    def run():
        with monkeypatch.context() as m, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before
            m.setattr(sys, "argv", [module, *args])
            runpy.run_module(module, run_name="__main__", alter_sys=True)

    ns = parse_only(run, monkeypatch)
    if module == "jobs.tokenize":
        check_tokenize_config(ns)
    return f"argparse of {module}"


def check_tokenize_config(ns: argparse.Namespace):
    from pipeline.config import load_config

    overrides = list(ns.overrides) + ([f"model={json.dumps(ns.model)}"] if ns.model else [])
    load_config(str(REPO / ns.config) if ns.config else None, overrides)


def check_audiotok(args: list[str], monkeypatch) -> str:
    from jobs.cli import COMMANDS, main

    assert args and args[0] in COMMANDS, f"audiotok has no command {args[:1]}"
    ns = parse_only(lambda: main(args), monkeypatch)
    if args[0] == "tokenize":
        check_tokenize_config(ns)
    return f"argparse of audiotok {args[0]}"


def check_pip(args: list[str]) -> str:
    from pip._internal.cli.main_parser import parse_command
    from pip._internal.commands import create_command
    from pip._vendor.packaging.requirements import Requirement

    try:
        name, rest = parse_command(list(args))
        options, requirements = create_command(name).parse_args(rest)
    except SystemExit as exc:
        raise AssertionError(f"pip's parser refused it ({exc.code})") from None
    for req in requirements:
        Requirement(req)
    extras = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for editable in getattr(options, "editables", []):
        path, _, wanted = editable.partition("[")
        assert path == ".", f"pip install -e {editable}: only this checkout"
        for extra in filter(None, wanted.rstrip("]").split(",")):
            assert extra in extras, f"pyproject.toml has no extra {extra!r}"
    return f"pip {name} parser"


def check_pytest(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(Path(__file__).relative_to(REPO))],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 5), done.stdout[-2000:] + done.stderr[-2000:]  # 5: all deselected by -m
    return "pytest's parser (--collect-only)"


def check_ray(args: list[str], doc: str, monkeypatch) -> str:
    import click
    from ray.scripts.scripts import cli

    rest, command, ctx = list(args), cli, None
    try:
        ctx = cli.make_context("ray", list(args))
        while isinstance(command, click.Group):
            name, command, rest = command.resolve_command(ctx, rest)
            ctx = command.make_context(name, rest, parent=ctx)
    except click.ClickException as exc:
        raise AssertionError(f"ray's CLI refused it: {exc.format_message()}") from None
    assert ctx.command_path == "ray job submit", f"no check for `{ctx.command_path}`"
    entrypoint = list(ctx.params["entrypoint"])
    check_command(Command(doc, shlex.join(entrypoint), tuple(entrypoint), ()), monkeypatch)
    pip = json.loads(ctx.params["runtime_env_json"] or "{}").get("pip", [])
    needs = {"s3://": "s3fs", "gs://": "gcsfs"}
    for prefix, package in needs.items():
        if any(prefix in a for a in entrypoint):
            assert package in pip, f"reads {prefix} but the runtime env's pip list has no {package}"
    model = entrypoint[entrypoint.index("--model") + 1] if "--model" in entrypoint else None
    if model and re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not (REPO / model).exists():
        assert "huggingface_hub" in pip, f"loads {model} from the Hub without huggingface_hub in the runtime env"
    return "ray job submit's CLI + its entry point"


def check_awk(args: list[str]) -> str:
    program_at = next(i for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "-v"))
    done = subprocess.run(["awk", *args[: program_at + 1], "/dev/null"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return "awk's parser on empty input"


def check_command(cmd: Command, monkeypatch) -> str:
    """How `cmd` is checked (raises when it is not valid, or when nothing can check it)."""
    if cmd.text in RUNS:
        return "run"
    argv = list(cmd.argv)
    prog, args = argv[0], argv[1:]
    if prog in ("python", "python3") and args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "pytest":
            return check_pytest(rest)
        if module == "pip":
            return check_pip(rest)
        return check_python_module(module, rest, monkeypatch)
    if prog in ("python", "python3") and args[:1] == ["-c"]:
        compile(args[1], "<python -c>", "exec")
        return "compile"
    if prog == "audiotok":
        return check_audiotok(args, monkeypatch)
    if prog == "pip":
        return check_pip(args)
    if prog == "ray":
        return check_ray(args, cmd.doc, monkeypatch)
    if prog == "awk":
        return check_awk(args)
    if prog in TOOLS:
        assert prog in BUILTINS or shutil.which(prog), f"{prog} is not installed"
        if prog in (".", "source"):
            assert args == [".venv/bin/activate"], "activates the venv the commands create"
        return "bash -n"
    raise AssertionError(f"no checker for `{prog}`: run it (RUNS) or add one to check_command")


def test_every_doc_command_is_parse_checked(monkeypatch, capsys):
    commands = doc_commands()
    assert len(commands) > 20
    failures = []
    for cmd in commands:
        try:
            check_command(cmd, monkeypatch)
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


def test_fenced_blocks_are_shell_python_or_plain():
    for path in DOCS:
        for lang, _ in fenced_blocks(path):
            assert lang in SHELL_LANGS | {"python", ""}, f"{path.name}: a ```{lang} block is neither checked nor run"


def test_a_wrong_command_fails_its_check(monkeypatch, capsys):
    """The checks can fail: a misspelt flag, an unknown config key, a bad pip option, a missing s3fs, an
    unknown program."""
    bad = [
        "python -m jobs.tokenize --config configs/demo.yaml --inptu x --output o",
        "python -m jobs.tokenize --config configs/demo.yaml --input x --output o buckets.no_such_key=1",
        "audiotok verify --tokens out/demo --count many --report r",
        "pip install --index-ulr https://example.invalid torch",
        "pip install -e '.[nosuchextra]'",
        "ray job submit --working-dir . --runtime-env-json '{\"pip\": [\"soundfile\"]}' -- python -m jobs.tokenize "
        "--config configs/encodec_24khz.yaml --input s3://b/x.tar --output s3://b/o",
        "python -m pytest --no-such-pytest-flag",
        "curl https://example.invalid",
    ]
    for text in bad:
        (cmd,) = split_commands("test", text)
        with pytest.raises(Exception):
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
    import soundfile as sf

    rng = np.random.default_rng(0)
    for rel, seconds in (("spk1/0001.wav", 1.2), ("spk1/0002.flac", 0.8), ("spk2/0001.wav", 2.0)):
        path = work / "my_audio" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(16000 * seconds)) / 16000
        sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32),
                 16000)
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
    "ruff check .": ("repo", None, lambda w, p: True),
}


def test_runs_are_shown_in_the_docs():
    shown = {cmd.text for cmd in doc_commands()}
    assert set(RUNS) <= shown, set(RUNS) - shown


@pytest.mark.slow
def test_cheap_doc_commands_run_as_written(tmp_path):
    """The demo first (the others read its output), then each cheap command, then the Python examples that
    read out/demo; each must exit 0 and leave what it promises."""
    for name in ("configs", "demo"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
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
