"""Test switch: faults planted at named stages of the pipeline, so a fault test always exercises
the stage it names instead of whatever a kill at a random time happens to hit.

Inert unless `AUDIOTOK_TEST_FAULTS` is set (one environment lookup per call). Its value is a
directory: the rules are read from `<dir>/rules` at every hit (no file: no faults), and each
firing is recorded as a file in `<dir>/fired/`, so counts survive the processes a rule kills and
rules can change between runs without restarting Ray (its workers inherit the variable when Ray
starts). `plant(dir, rules)` writes the rules and forgets earlier firings; `fired(dir)` lists them.

One rule per line (or comma-separated):

    action@stage[:pattern][>items][#times]

    action   kill       SIGKILL the current process (an actor; at `decode`, a decoder process)
             killsession  SIGKILL every process of the current session: for a job started in its
                        own session (setsid), the driver, its local Ray, actors and decoders together
             oom        raise torch.cuda.OutOfMemoryError
             cudafatal  raise the error torch raises after an illegal memory access (a CUDA context
                        that is unusable from then on: `cuda_errors.is_fatal_cuda_error` is true)
             raise      raise PlantedError (a bug in our code, as far as the pipeline can tell)
             pause      sleep until killed (a stuck actor, for a test to act on)
    stage    after_decode     shard_worker: the shard's audio is decoded, before encoding
             during_encode    shard_worker: after the first of two or more batches
             encode_oom       shard_worker: before each attempt to encode a batch (items: its
                              largest forward pass, in items or chunks, at the current limit)
             before_commit    shard_worker: the shard is encoded, its commit (off the encode
                              thread) not started; the next shard may be encoding meanwhile
             between_renames  writer.commit_shard: the parts are in place, the manifest record not
             decode           decoder process: before decoding a sample (name: the sample's key)
             snapshot_write   manifest_snapshot.write: the new snapshot's bytes are written, not yet
                              in place (name: snapshot-<generation>)
    pattern  fnmatch pattern over the name (a shard id, or a key at `decode`); default `*`
    >items   fire only when the stage's item count is larger (encode_oom); default: always
    #times   fire on the first `times` hits that match (default 1); `#all`: on every hit

Examples: `kill@after_decode:s-003.tar-*` (once, across actor restarts), `kill@after_decode:
s-003.tar-*#all` (every attempt), `oom@encode_oom:*>2#all` (every pass of more than 2 items).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "AUDIOTOK_TEST_FAULTS"
ACTIONS = ("kill", "killsession", "oom", "cudafatal", "raise", "pause")
STAGES = ("after_decode", "during_encode", "encode_oom", "before_commit", "between_renames", "decode",
          "snapshot_write")
_RULE = re.compile(r"(?P<action>\w+)@(?P<stage>\w+)(?::(?P<pattern>[^>#]+))?(?:>(?P<above>\d+))?"
                   r"(?:#(?P<times>\d+|all))?")


class PlantedError(RuntimeError):
    """The `raise` action: stands for a bug in our code at a named stage."""


@dataclass(frozen=True)
class Rule:
    action: str
    stage: str
    pattern: str = "*"
    above: int | None = None  # fire only when items > above
    times: int | None = 1  # None: every hit

    def matches(self, stage: str, name: str, items: int | None) -> bool:
        return (stage == self.stage and fnmatch.fnmatchcase(name, self.pattern)
                and (self.above is None or (items is not None and items > self.above)))


@dataclass(frozen=True)
class Firing:
    rule: str  # the rule as written
    stage: str
    name: str
    items: int | None
    pid: int
    time: float


def parse(text: str) -> list[Rule]:
    """Rules from `text` (lines or commas); ValueError naming the valid choices for a bad one."""
    rules = []
    for item in (s.strip() for s in re.split(r"[,\n]", text)):
        if not item or item.startswith("#"):
            continue
        m = _RULE.fullmatch(item)
        if m is None:
            raise ValueError(f"{ENV}: bad rule {item!r}; expected action@stage[:pattern][>items][#times]")
        if m["action"] not in ACTIONS or m["stage"] not in STAGES:
            raise ValueError(f"{ENV}: bad rule {item!r}; actions are {ACTIONS}, stages {STAGES}")
        times = None if m["times"] == "all" else int(m["times"] or 1)
        rules.append(Rule(m["action"], m["stage"], (m["pattern"] or "*").strip(),
                          None if m["above"] is None else int(m["above"]), times))
    return rules


def format_rule(rule: Rule) -> str:
    above = "" if rule.above is None else f">{rule.above}"
    times = "#all" if rule.times is None else f"#{rule.times}"
    return f"{rule.action}@{rule.stage}:{rule.pattern}{above}{times}"


def plant(directory: str | os.PathLike, rules: str | list[str]) -> Path:
    """Write `rules` to `<directory>/rules` (validated) and forget earlier firings; returns the directory."""
    text = rules if isinstance(rules, str) else "\n".join(rules)
    parse(text)
    root = Path(directory)
    (root / "fired").mkdir(parents=True, exist_ok=True)
    for old in (root / "fired").iterdir():
        old.unlink()
    tmp = root / f".rules-{os.getpid()}"
    tmp.write_text(text + "\n")
    os.replace(tmp, root / "rules")
    return root


def fired(directory: str | os.PathLike) -> list[Firing]:
    """Every firing recorded under `directory`, oldest first."""
    path = Path(directory) / "fired"
    found = []
    for p in sorted(path.iterdir()) if path.is_dir() else []:
        try:
            found.append(Firing(**json.loads(p.read_text())))
        except ValueError:  # claimed, its record not written yet
            continue
    return sorted(found, key=lambda f: f.time)


def maybe_fault(stage: str, name: str, items: int | None = None) -> None:
    """Act on the first planted rule that matches this hit of `stage` for `name` and has firings left.

    stage: one of STAGES; name: a shard id (`decode`: a sample key); items: the stage's item count.
    """
    directory = os.environ.get(ENV)
    if not directory:
        return
    if stage not in STAGES:
        raise ValueError(f"unknown fault stage {stage!r}; stages are {STAGES}")
    try:
        text = (Path(directory) / "rules").read_text()
    except FileNotFoundError:
        return
    for index, rule in enumerate(parse(text)):
        if rule.matches(stage, name, items) and _claim(Path(directory), index, rule, stage, name, items):
            _act(rule, stage, name)
            return


def _claim(root: Path, index: int, rule: Rule, stage: str, name: str, items: int | None) -> bool:
    """Record a firing of rule `index` in its next free slot (O_EXCL: one winner per slot, across
    processes); False when its `times` slots are all taken."""
    record = json.dumps({"rule": format_rule(rule), "stage": stage, "name": name, "items": items,
                         "pid": os.getpid(), "time": time.time()}).encode()
    (root / "fired").mkdir(parents=True, exist_ok=True)
    slot = 1
    while rule.times is None or slot <= rule.times:
        try:
            fd = os.open(root / "fired" / f"{index}-{slot}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            slot += 1
            continue
        try:
            os.write(fd, record)
        finally:
            os.close(fd)
        return True
    return False


def _kill_session() -> None:
    """SIGKILL every other process of this session (Ray puts each worker in a process group of its
    own, but all stay in the driver's session), then this one."""
    session = os.getsid(0)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.getsid(int(entry)) == session:
                    os.kill(int(entry), signal.SIGKILL)
            except OSError:
                continue
    os.kill(os.getpid(), signal.SIGKILL)


def _act(rule: Rule, stage: str, name: str) -> None:
    what = f"planted fault {format_rule(rule)} at {stage} of {name!r} ({ENV})"
    if rule.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif rule.action == "killsession":
        _kill_session()
    elif rule.action == "oom":
        import torch

        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory: {what}")
    elif rule.action == "cudafatal":
        import torch

        error = getattr(torch, "AcceleratorError", RuntimeError)  # torch >= 2.8
        raise error(f"CUDA error: an illegal memory access was encountered\n{what}")
    elif rule.action == "raise":
        raise PlantedError(what)
    elif rule.action == "pause":
        while True:
            time.sleep(1.0)
