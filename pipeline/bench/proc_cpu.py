"""CPU seconds of a process and of its child processes, read from the OS (Linux /proc, os.times).

    snap = snapshot()            this process (all its threads), its reaped children, each live child
    later = snapshot()
    usage = cpu_between(snap, later)   -> [ProcessCPU]: "actor" (this process), one row per child
                                          process by role, and "reaped children" (children that
                                          ended and were waited for in between)

A child's role comes from its command line: `python -m pipeline.decode_child` (`decode_pool` in trees before
2026-12-08, for A/B runs) is a "decoder",
`python -m <module>` is that module, anything else its executable's name. A child that started in
between counts from zero; one that ended in between is in "reaped children" once waited for.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Child:
    pid: int
    role: str
    cpu_s: float
    sys_s: float = 0.0  # of cpu_s, in the kernel
    minflt: int = 0  # minor page faults (fresh pages mapped in: most of a process's sys time here)


@dataclass(frozen=True)
class Snapshot:
    self_cpu_s: float  # user + system of this process, all threads
    reaped_cpu_s: float  # user + system of its children that ended and were waited for
    children: dict[int, Child] = field(default_factory=dict)
    self_sys_s: float = 0.0
    self_minflt: int = 0


@dataclass(frozen=True)
class ProcessCPU:
    role: str
    pid: int | None
    cpu_s: float
    sys_s: float = 0.0
    minflt: int = 0


def _stat(pid: int) -> tuple[int, float, float, int] | None:
    """(parent pid, user + system CPU seconds, system seconds, minor faults) of `pid`, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid ... utime stime
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, int(fields[12]) / _TICK, int(fields[7])


def _role(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "gone"
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        return "decoder" if module in ("pipeline.decode_child", "pipeline.decode_pool") else module
    return os.path.basename(argv[0]) if argv else "?"


def children(parent: int | None = None) -> dict[int, Child]:
    """The live child processes of `parent` (this process by default) with their CPU seconds."""
    parent = os.getpid() if parent is None else parent
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None and stat[0] == parent:
                out[int(name)] = Child(int(name), _role(int(name)), *stat[1:])
    return out


def snapshot() -> Snapshot:
    t = os.times()
    return Snapshot(t.user + t.system, t.children_user + t.children_system, children(), t.system,
                    resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def cpu_between(before: Snapshot, after: Snapshot) -> list[ProcessCPU]:
    """CPU seconds spent between two snapshots: this process ("actor"), each child alive at `after`, and
    the children reaped in between; children alive at `before` only are in the reaped row once waited for."""
    rows = [ProcessCPU("actor", os.getpid(), after.self_cpu_s - before.self_cpu_s,
                       after.self_sys_s - before.self_sys_s, after.self_minflt - before.self_minflt)]
    for pid, child in sorted(after.children.items()):
        start = before.children.get(pid, Child(pid, child.role, 0.0))
        rows.append(ProcessCPU(child.role, pid, child.cpu_s - start.cpu_s, child.sys_s - start.sys_s,
                               child.minflt - start.minflt))
    reaped = after.reaped_cpu_s - before.reaped_cpu_s
    gone = [c for pid, c in before.children.items() if pid not in after.children]
    if reaped > 0 or gone:  # their CPU before the first snapshot was already counted there
        rows.append(ProcessCPU("reaped children", None, max(0.0, reaped - sum(c.cpu_s for c in gone))))
    return rows
