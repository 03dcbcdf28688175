"""A row's work in a child process with a time limit, for the rows that cannot bound themselves from
inside (a `torch.compile` that compiles for minutes, a k-means fit on an unknown host): the child is
killed at the limit and the row becomes a TIMEOUT row; the check goes on. The child is spawned (a
fresh interpreter: no CUDA state, threads or Ray connection inherited), sets fp32 as the parent did,
runs `fn(*args)` and sends back the pickled result (plain pickle: tensors as bytes, not shared memory,
so nothing depends on the child still running)."""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections.abc import Callable
from typing import Any

KILL_WAIT_S = 10.0  # after the limit (or the result), how long the child may take to exit before SIGKILL


class RowTimeout(Exception):
    """The child did not finish within its limit (it was killed)."""

    def __init__(self, limit_s: float, what: str):
        super().__init__(f"{what} did not finish within {limit_s:.0f} s (stopped)")
        self.limit_s = limit_s


class ChildFailed(RuntimeError):
    """The child raised (its exception's type and message) or died without a result."""


def _child(conn, fn: Callable, args: bytes) -> None:
    from codec.runtime import strict_fp32

    strict_fp32()  # as run_all sets it in the parent
    try:
        result = (True, fn(*pickle.loads(args)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        result = (False, f"{type(exc).__name__}: {exc}")
    conn.send_bytes(pickle.dumps(result))
    conn.close()


def call(fn: Callable, args: tuple, limit_s: float, what: str = "the row") -> Any:
    """fn(*args) in a spawned child; its result, or RowTimeout after `limit_s` seconds (the child is
    killed), or ChildFailed when it raised or died. `fn` must be importable (a module-level function)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, pickle.dumps(args)), name=f"gpu-check {what}")
    deadline = time.monotonic() + limit_s
    proc.start()
    send.close()  # the child's end: EOF here when the child dies
    grace = 0.0  # timed out: no grace
    try:
        if not receive.poll(max(0.0, deadline - time.monotonic())):
            raise RowTimeout(limit_s, what)
        grace = KILL_WAIT_S
        try:
            ok, value = pickle.loads(receive.recv_bytes())
        except EOFError:
            raise ChildFailed(f"{what}: the child process died without a result") from None
    finally:
        receive.close()
        _stop(proc, grace)
    if not ok:
        raise ChildFailed(f"{what} raised in its child process: {value}")
    return value


def _stop(proc, grace_s: float) -> None:
    """Let the child exit within `grace_s`, then terminate it, then kill it: every wait bounded."""
    proc.join(grace_s)
    if proc.is_alive():
        proc.terminate()
        proc.join(KILL_WAIT_S)
    if proc.is_alive():
        proc.kill()
        proc.join(KILL_WAIT_S)
