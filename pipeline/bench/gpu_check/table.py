"""The check's rows: each check runs guarded, so one failure (out of memory, an exception) becomes a
row saying so and the rest still run; rows print as they finish and the JSON is rewritten after each.

Status of a row: ok (measured and within its target), fail (measured, outside its target), oom (ran
out of memory), error (raised), timeout (stopped at its time limit: in_child.py), skipped (not run:
CPU mode, time budget).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .in_child import RowTimeout

STATUSES = ("ok", "fail", "oom", "error", "timeout", "skipped")


@dataclass
class Check:
    """One row. value: the headline number(s) as text; data: the same numbers for the JSON."""

    section: str
    name: str
    status: str
    value: str = ""
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}; got {self.status!r}")


def out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA out-of-memory error, a host MemoryError, or a RuntimeError saying so."""
    import torch

    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Report:
    """Collects rows; `run` guards a check; every added row is printed and the JSON rewritten."""

    def __init__(self, json_path: str | None, header: dict[str, Any], budget_s: float, echo=print):
        self.json_path, self.header, self.echo = json_path, header, echo
        self.started = time.monotonic()
        self.deadline = self.started + budget_s
        self.checks: list[Check] = []

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def limit_s(self, sizes, row: str) -> float:
        """Where a row run in a child process is stopped: its `sizes.limit_s[row]`, or the budget's end if sooner."""
        return max(0.0, min(sizes.limit_s[row], self.left_s()))

    def run(self, section: str, name: str, fn: Callable[[], Check | list[Check]], needs_s: float = 0.0) -> list[Check]:
        """Run `fn` (returning its row or rows); a raise becomes one oom / error row. Skipped when less
        than `needs_s` seconds of the time budget are left."""
        if self.left_s() < needs_s:
            return [self.add(Check(section, name, "skipped", "time budget",
                                   f"{max(self.left_s(), 0):.0f} s left, needs ~{needs_s:.0f} s"))]
        started = time.monotonic()
        try:
            out = fn()
            checks = out if isinstance(out, list) else [out]
        except RowTimeout as exc:
            checks = [Check(section, name, "timeout", "time limit", str(exc), {"limit_s": exc.limit_s})]
        except Exception as exc:  # noqa: BLE001 - guarded on purpose: one failed check must not stop the rest
            oom = out_of_memory(exc)
            checks = [Check(section, name, "oom" if oom else "error", "out of memory" if oom else "raised",
                            _first_line(exc))]
        _free_cuda()  # every row starts with the allocator's cache emptied (our peaks are torch's, per row)
        took = time.monotonic() - started
        for c in checks:
            c.seconds = c.seconds or took / len(checks)
            self.add(c)
        return checks

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        self.echo(format_row(check))
        self.write()
        return check

    def to_json(self) -> dict[str, Any]:
        counts = {s: sum(c.status == s for c in self.checks) for s in STATUSES}
        return _plain({"header": self.header, "elapsed_s": time.monotonic() - self.started, "counts": counts,
                       "checks": [dataclasses.asdict(c) for c in self.checks]})

    def write(self) -> None:
        if not self.json_path:
            return
        tmp = f"{self.json_path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1, default=str)
        os.replace(tmp, self.json_path)


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


WIDTHS = (13, 34, 7, 30)


def format_row(c: Check) -> str:
    cells = (c.section, c.name, c.status.upper(), c.value)
    text = " ".join(f"{str(v)[:w]:{w}}" for v, w in zip(cells, WIDTHS))
    return f"{text} {c.seconds:6.1f}s  {c.detail}"


def format_table(checks: list[Check]) -> str:
    head = " ".join(f"{h:{w}}" for h, w in zip(("section", "check", "status", "value"), WIDTHS)) + "   time  detail"
    return "\n".join([head, "-" * len(head)] + [format_row(c) for c in checks])
