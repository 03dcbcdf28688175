"""Helpers of the fault suite (tests/scenarios/test_faults.py, test_fault_cluster.py, test_job.py): inputs,
the uninterrupted reference, outcome comparison, planted faults, and the results table.

Every fault test compares a run's outputs with the reference (the same shards tokenized by
`ShardTokenizer` one by one, no Ray, no faults): the keys in tokens ∪ rejects, each exactly once,
the reject reasons, and the codes, bit for bit. Each test appends a `Row`; the table is printed at
the end of the pytest session (tests/conftest.py) and by `python -m pytest -m faults`.

Processes die at named stages (`pipeline.fault_injection`, switch `AUDIOTOK_TEST_FAULTS`), never at random
times: each test plants its rules, runs, and checks that every rule fired as often as it says.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

from pipeline import fault_injection
from tests.conftest import REPO, corpus_file, torch_threads

FAULTS_ENV = "AUDIOTOK_TEST_DECODER_FAULTS"
DECODER_FAULTS = "segv:crash-segv,segv-once:crash-once,hang:crash-hang,raise:crash-raise"
SPEECH = ["speech/librivox_0890_16k.flac", "speech/cards_005_16k.wav", "speech/goforward_16k.wav",
          "speech/librivox_0920_16k.ogg", "speech/cmu_arctic_a0007_16k.wav"]
ROWS: list[Row] = []


@dataclass
class Outcome:
    tokens: dict[str, bytes]  # key -> codes (int16 bytes, shape-prefixed)
    rejects: dict[str, str]  # key -> reason
    rows: int  # token rows + reject rows
    duplicates: int  # keys seen more than once across tokens and rejects


@dataclass
class Row:
    fault: str
    runs: int
    expected: int
    found: int
    duplicates: int
    mismatching: int
    note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def make_shards(root: Path, shards: int = 8, per_shard: int = 4, extra: dict[str, list[str]] | None = None) -> str:
    """`shards` webdataset tars `s-NNN.tar` of `per_shard` real speech clips (+ `extra`: shard -> keys).

    Returns the brace spec. Keys are `kS-I`; extra keys reuse real audio under the given names.
    """
    root.mkdir(parents=True, exist_ok=True)
    blobs = [(corpus_file(p).read_bytes(), p.rsplit(".", 1)[1]) for p in SPEECH]
    for s in range(shards):
        names = [f"k{s}-{i}" for i in range(per_shard)] + list((extra or {}).get(f"s-{s:03d}", []))
        with tarfile.open(root / f"s-{s:03d}.tar", "w") as tf:
            for i, key in enumerate(names):
                data, ext = blobs[(s + i) % len(blobs)]
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return str(root / f"s-{{000..{shards - 1:03d}}}.tar")


def reference(spec: str, cfg, out: Path) -> Outcome:
    """The uninterrupted run: every shard through ShardTokenizer in this process, no Ray, no faults."""
    from codec import load_model
    from pipeline.provenance import build_provenance
    from pipeline.shard_worker import ShardTokenizer
    from pipeline.sources import list_shards

    model = load_model(cfg.model)
    planted = {name: os.environ.pop(name, None) for name in (FAULTS_ENV, fault_injection.ENV)}
    worker = ShardTokenizer(model, cfg, str(out), build_provenance(model, cfg, "cpu"))
    try:
        with torch_threads(cfg.cpus_per_actor):  # as the actor does: codes depend on it
            for shard in list_shards(spec, cfg.source):
                worker.run(shard)
    finally:
        worker.close()
        os.environ.update({name: value for name, value in planted.items() if value is not None})
    return read_outcome(out)


def read_outcome(out: Path) -> Outcome:
    """What a reader of `out` sees: every visible tokens/ and rejects/ Parquet file."""
    out = Path(out)
    tokens = []
    if (out / "tokens").exists():
        tokens = pads.dataset(out / "tokens").to_table(columns=["key", "codes"]).to_pylist()
    rejects = pads.dataset(out / "rejects").to_table().to_pylist() if (out / "rejects").exists() else []
    keys = [r["key"] for r in tokens] + [r["key"] for r in rejects]
    codes = {}
    for r in tokens:
        a = np.asarray(r["codes"], dtype=np.int16)
        codes[r["key"]] = np.asarray(a.shape, np.int64).tobytes() + a.tobytes()
    return Outcome(codes, {r["key"]: r["reason"] for r in rejects}, len(keys), len(keys) - len(set(keys)))


def compare(fault: str, runs: int, got: Outcome, want: Outcome, note: str = "") -> Row:
    """Record a table row for `fault`; row.problems lists every difference from `want`."""
    mismatching = sum(got.tokens.get(k) != v for k, v in want.tokens.items()) + len(set(got.tokens) - set(want.tokens))
    row = Row(fault, runs, want.rows, got.rows, got.duplicates, mismatching, note)
    got_keys, want_keys = set(got.tokens) | set(got.rejects), set(want.tokens) | set(want.rejects)
    if got_keys != want_keys:
        row.problems.append(f"keys differ: missing {sorted(want_keys - got_keys)[:5]}, "
                            f"extra {sorted(got_keys - want_keys)[:5]}")
    if got.rejects != want.rejects:
        differing = sorted(set(got.rejects.items()) ^ set(want.rejects.items()))
        row.problems.append(f"reject reasons differ: {differing[:5]}")
    if row.found != row.expected or row.duplicates or row.mismatching:
        row.problems.append(f"rows {row.found}/{row.expected}, duplicates {row.duplicates}, "
                            f"mismatching codes {row.mismatching}")
    ROWS.append(row)
    return row


def moved_to_rejects(want: Outcome, reasons: dict[str, str]) -> Outcome:
    """`want` with the given keys rejected (key -> reason) instead of tokenized."""
    tokens = {k: v for k, v in want.tokens.items() if k not in reasons}
    return Outcome(tokens, {**want.rejects, **reasons}, want.rows, 0)


def format_table(rows: list[Row]) -> str:
    head = ("fault", "runs", "rows expected", "rows found", "duplicates", "mismatching codes", "ok", "note")
    body = [(r.fault, r.runs, r.expected, r.found, r.duplicates, r.mismatching, "yes" if r.ok else "NO", r.note)
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = [" | ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [head, *body]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "fault suite (faults at named stages, AUDIOTOK_TEST_FAULTS)\n" + "\n".join(lines)


# ----- processes -------------------------------------------------------------------------------
def descendants(root: int, needle: str) -> list[int]:
    """Pids of the processes under `root` (any depth) whose command line contains `needle`."""
    parent, cmd = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = []
    for pid in parent:
        p = parent.get(pid)
        while p and p != root:
            p = parent.get(p)
        if p == root and needle in cmd.get(pid, ""):
            found.append(pid)
    return sorted(found)


def commits(out: Path) -> int:
    return len(list((Path(out) / "_manifest").glob("*.json"))) if (Path(out) / "_manifest").exists() else 0


def shard_id(spec: str, index: int) -> str:
    """The shard id of the `index`-th shard of `spec` (ids carry a hash of the URL)."""
    from pipeline.sources import list_shards

    return list_shards(spec, demo_config().source)[index].shard_id


def firings(directory) -> Counter:
    """{(rule, name): times fired} of the faults planted in `directory`."""
    return Counter((f.rule, f.name) for f in fault_injection.fired(directory))


def demo_config(*overrides: str):
    from pipeline.config import load_config

    return load_config(REPO / "configs" / "test.yaml", ["progress_interval_s=0.5", *overrides])
