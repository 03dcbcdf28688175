"""The commands shown in README.md and docs/*.md, and how each is parse-checked (tests/test_docs_commands.py).

Commands come from the fenced `bash` blocks (split at `&&`, `||`, `;`, `|` and line ends) and from inline
spans that start with `python -m`, `audiotok` or `pip install` and carry options. `check_command` parse-checks
one with its program's own parser: the entry points' and `python -m venv`'s argparse parsers (stopped right
after parsing; `jobs.tokenize` also loads the config with its overrides), pip's option parser, Ray's
`ray job submit` CLI (and its entry point, and that the runtime env installs the storage driver and the Hub
client the command needs), pytest's option parser (`--collect-only`), `compile` for `python -c`, awk's parser
on empty input; shell tools must exist (each block also passes `bash -n`). A command whose program has no
checker raises, unless the tests run it as written.
"""

from __future__ import annotations

import argparse
import json
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
DATA_LANGS = {"", "text", "yaml", "json", "toml", "csv"}  # shown, not run: file trees, configs, output
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


def check_command(cmd: Command, monkeypatch, run_as_written: frozenset[str] = frozenset()) -> str:
    """How `cmd` is checked (raises when it is not valid, or when nothing can check it)."""
    if cmd.text in run_as_written:
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
