"""The import rules of docs/architecture.md, checked on the source: every `import` of codec/, pipeline/
and jobs/ (at module level, inside functions, under `if TYPE_CHECKING`; relative ones resolved) is an
edge of the module graph, and the graph must keep the rules. The checker is tested on planted
violations too, so that it can fail."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("codec", "pipeline", "jobs")
# pipeline modules that wire the parts together (layer 2): only other wiring modules and jobs/ import them
WIRING = ("pipeline.job", "pipeline.shard_actor", "pipeline.verify_on_ray", "pipeline.bench")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """{module: the first-party modules it imports}, from every .py file under root/<package>.
    `from a.b import c` counts as an import of a.b.c when that is a module, else of a.b; an import
    of a first-party module that does not exist raises ValueError (a typo must not hide an edge)."""
    files = {module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                wanted = [(module, a.name) for a in node.names]
            else:
                continue
            for module, attr in wanted:
                if module.split(".")[0] not in packages:
                    continue
                if module not in files:
                    raise ValueError(f"{path}: imports {module}, which is no module of {packages}")
                target = f"{module}.{attr}" if attr and f"{module}.{attr}" in files else module
                if target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer(module: str) -> int:
    """0 codec/, 1 the pipeline's parts, 2 the pipeline's wiring (WIRING), 3 jobs/."""
    if within(module, "codec"):
        return 0
    if within(module, "jobs"):
        return 3
    return 2 if any(within(module, w) for w in WIRING) else 1


def jobs_package(module: str) -> str:
    """The jobs/ subpackage a module belongs to (jobs.gpu_check for its modules), or the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every broken rule of docs/architecture.md, one line each."""
    out = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    for a in sorted(graph):
        for b in sorted(graph[a]):
            edge = f"{a} imports {b}"
            for one, other in (("pipeline.engine", "pipeline.verify"), ("pipeline.verify", "pipeline.engine")):
                if within(a, one) and within(b, other):
                    out.append(f"{edge}: engine and verify know nothing of each other")
            if within(a, "jobs") and within(b, "jobs") and a != "jobs.cli" and jobs_package(a) != jobs_package(b):
                out.append(f"{edge}: a jobs/ module imports no other jobs/ module (only jobs.cli dispatches)")
            if layer(b) > layer(a):
                out.append(f"{edge}: layer {layer(a)} may not import layer {layer(b)} "
                           "(codec < pipeline parts < pipeline wiring < jobs)")
    return out


def test_the_source_keeps_the_import_rules():
    graph = import_graph(REPO)
    assert len(graph) > 80 and "pipeline.engine.ray_backend" in graph  # the whole source was read
    assert violations(graph) == []


def test_every_kind_of_import_is_an_edge(tmp_path):
    files = {
        "pipeline/__init__.py": "",
        "pipeline/engine/__init__.py": "",
        "pipeline/engine/backend.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                       "    from ..verify.check import Checker\n"),
        "pipeline/verify/__init__.py": "from .check import Checker\n",
        "pipeline/verify/check.py": "def f():\n    from pipeline.engine import backend\n",
        "pipeline/verify/run.py": "from . import check\nimport pipeline.verify\n",
        "jobs/__init__.py": "",
        "jobs/a.py": "import jobs.b\n",
        "jobs/b.py": "",
        "jobs/cli.py": "import jobs.a\n",
        "codec/__init__.py": "def load():\n    import pipeline\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["pipeline.engine.backend"] == {"pipeline.verify.check"}  # TYPE_CHECKING, relative
    assert graph["pipeline.verify.check"] == {"pipeline.engine.backend"}  # inside a function
    assert graph["pipeline.verify.run"] == {"pipeline.verify.check", "pipeline.verify"}
    found = violations(graph)
    assert "import cycle: pipeline.engine.backend <-> pipeline.verify.check" in found
    assert any(line.startswith("pipeline.engine.backend imports pipeline.verify.check: engine") for line in found)
    assert any(line.startswith("pipeline.verify.check imports pipeline.engine.backend: engine") for line in found)
    assert any(line.startswith("jobs.a imports jobs.b: a jobs/") for line in found)
    assert not any(line.startswith("jobs.cli imports") for line in found)  # the dispatcher may
    assert any(line.startswith("codec imports pipeline: layer 0") for line in found)
    (tmp_path / "jobs" / "b.py").write_text("from .missing import x\n")
    with pytest.raises(ValueError, match="jobs.missing"):
        import_graph(tmp_path)


def test_layers_and_jobs_subpackages():
    graph = {"pipeline.writer": {"pipeline.job"}, "pipeline.job": set(), "pipeline.bench.e2e": {"pipeline.job"},
             "jobs.gpu_check.cli": {"jobs.gpu_check.table"}, "jobs.gpu_check.table": set(),
             "pipeline.config": {"jobs.tokenize"}, "jobs.tokenize": {"pipeline.config"}}
    found = violations(graph)
    assert "pipeline.writer imports pipeline.job: layer 1 may not import layer 2 " \
           "(codec < pipeline parts < pipeline wiring < jobs)" in found
    assert not any(line.startswith(("pipeline.bench.e2e", "jobs.gpu_check.cli")) for line in found)
    assert "import cycle: jobs.tokenize <-> pipeline.config" in found
    assert any(line.startswith("pipeline.config imports jobs.tokenize: layer 1") for line in found)
