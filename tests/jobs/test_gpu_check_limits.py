"""Rows that cannot bound themselves run in a child process killed at their limit (in_child.py): a
result comes back, a raise or a death is an error, a child past its limit is killed and the row says
TIMEOUT while the check goes on."""

from __future__ import annotations

import math
import os
import time

import pytest

from pipeline.bench.gpu_check import in_child, sizes
from pipeline.bench.gpu_check.table import Check, Report


def test_a_child_returns_raises_or_dies():
    assert in_child.call(math.sqrt, (16.0,), 120) == 4.0
    with pytest.raises(in_child.ChildFailed, match="ValueError: math domain error"):
        in_child.call(math.sqrt, (-1.0,), 120)
    with pytest.raises(in_child.ChildFailed, match="died without a result"):
        in_child.call(os._exit, (3,), 120)


def test_a_child_past_its_limit_is_killed_and_the_row_says_timeout(tmp_path):
    report = Report(str(tmp_path / "r.json"), {}, budget_s=60, echo=lambda line: None)
    started = time.monotonic()
    (row,) = report.run("variants", "24khz compile", lambda: in_child.call(time.sleep, (600,), 1.0, "torch.compile"))
    assert time.monotonic() - started < 1.0 + 2 * in_child.KILL_WAIT_S
    assert row.status == "timeout" and row.data["limit_s"] == 1.0 and "did not finish within 1 s" in row.detail
    (after,) = report.run("families", "next", lambda: Check("families", "next", "ok"))  # the check goes on
    assert after.status == "ok" and report.to_json()["counts"]["timeout"] == 1


def test_child_rows_never_run_past_the_budget():
    report = Report(None, {}, budget_s=50, echo=lambda line: None)
    gpu = sizes.pick(cpu=False)
    assert report.limit_s(gpu, "fit") == gpu.limit_s["fit"] == 30  # its own limit while the budget lasts
    assert 49 < report.limit_s(gpu, "compile") <= 50  # the budget's end when sooner
    assert all(gpu.limit_s[row] <= gpu.budget_s for row in ("fit", "compile"))


def test_the_cuda_cache_is_emptied_after_every_row(monkeypatch):
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    report = Report(None, {}, budget_s=60, echo=lambda line: None)
    report.run("memory", "a", lambda: Check("memory", "a", "ok"))
    report.run("memory", "b", lambda: 1 / 0)
    assert len(emptied) == 2 and [c.status for c in report.checks] == ["ok", "error"]


def test_the_probe_actors_results_are_waited_for_a_bounded_time(monkeypatch):
    import ray.exceptions

    from pipeline.engine import ray_backend
    from pipeline.engine.placement import ActorRequest
    from pipeline.errors import JobFailed

    class Method:
        def remote(self, *args):
            return object()

    class Actor:
        describe, run = Method(), Method()

    class ActorClass:
        def options(self, **kw):
            return self

        def remote(self, *args):
            return Actor()

    waits, killed = [], []

    def get(refs, timeout=None):
        if isinstance(refs, list):  # the batches' results: never ready here
            waits.append(timeout)
            raise ray.exceptions.GetTimeoutError("not ready")
        return {"described": True}

    monkeypatch.setattr(ray_backend, "placed_actor", lambda cls: ActorClass())
    monkeypatch.setattr(ray_backend.ray, "wait", lambda refs, timeout: (refs, []))
    monkeypatch.setattr(ray_backend.ray, "get", get)
    monkeypatch.setattr(ray_backend.ray, "kill", killed.append)
    with pytest.raises(JobFailed, match="did not finish within 5 s"):
        ray_backend.run_on_actors(object, (), [[]], ActorRequest(num_cpus=0.0), 1, 30, "probe", results_timeout_s=5)
    assert waits == [5] and len(killed) == 1
