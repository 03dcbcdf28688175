"""pipeline.fault_injection: the rule syntax, counts that survive the process a rule kills, each action."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pipeline import fault_injection
from tests.conftest import REPO


@pytest.fixture
def planted(tmp_path, monkeypatch):
    monkeypatch.setenv(fault_injection.ENV, str(tmp_path / "faults"))
    return lambda *rules: fault_injection.plant(tmp_path / "faults", list(rules))


def test_rule_syntax():
    rules = fault_injection.parse("kill@after_decode:s-003.tar-*#all, oom@encode_oom:*>2#3\nraise@between_renames")
    assert rules == [fault_injection.Rule("kill", "after_decode", "s-003.tar-*", None, None),
                     fault_injection.Rule("oom", "encode_oom", "*", 2, 3),
                     fault_injection.Rule("raise", "between_renames", "*", None, 1)]
    assert [fault_injection.format_rule(r) for r in rules] == [
        "kill@after_decode:s-003.tar-*#all", "oom@encode_oom:*>2#3", "raise@between_renames:*#1"]
    for bad in ("kill@after_encode:x", "explode@decode", "kill@decode:x#twice", "kill"):
        with pytest.raises(ValueError, match=fault_injection.ENV):
            fault_injection.parse(bad)


def test_unset_or_without_rules_does_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(fault_injection.ENV, raising=False)
    fault_injection.maybe_fault("after_decode", "s-1")
    monkeypatch.setenv(fault_injection.ENV, str(tmp_path / "nothing-planted"))
    fault_injection.maybe_fault("after_decode", "s-1")
    assert not (tmp_path / "nothing-planted").exists()
    with pytest.raises(ValueError, match="unknown fault stage"):
        fault_injection.maybe_fault("after_decod", "s-1")


def test_cudafatal_raises_what_a_poisoned_context_raises(planted):
    from pipeline.cuda_errors import is_fatal_cuda_error, is_out_of_memory

    planted("cudafatal@during_encode:s-1")
    with pytest.raises(RuntimeError, match="illegal memory access") as raised:
        fault_injection.maybe_fault("during_encode", "s-1")
    assert is_fatal_cuda_error(raised.value) and not is_out_of_memory(raised.value)


def test_pattern_items_and_times(planted, tmp_path):
    root = planted("raise@during_encode:s-00[12]#2", "oom@encode_oom:*>2#all")
    for name in ("s-003", "s-010"):
        fault_injection.maybe_fault("during_encode", name)  # no match
    with pytest.raises(fault_injection.PlantedError, match="s-001"):
        fault_injection.maybe_fault("during_encode", "s-001")
    with pytest.raises(fault_injection.PlantedError, match="s-002"):
        fault_injection.maybe_fault("during_encode", "s-002")
    fault_injection.maybe_fault("during_encode", "s-001")  # its 2 firings are spent
    import torch

    fault_injection.maybe_fault("encode_oom", "s-001", items=2)
    fault_injection.maybe_fault("encode_oom", "s-001")  # no item count: never above
    for _ in range(3):
        with pytest.raises(torch.cuda.OutOfMemoryError, match="CUDA out of memory"):
            fault_injection.maybe_fault("encode_oom", "s-001", items=3)
    got = [(f.rule, f.name, f.items, f.pid) for f in fault_injection.fired(root)]
    assert got == [("raise@during_encode:s-00[12]#2", "s-001", None, os.getpid()),
                   ("raise@during_encode:s-00[12]#2", "s-002", None, os.getpid())] + \
        [("oom@encode_oom:*>2#all", "s-001", 3, os.getpid())] * 3
    fault_injection.plant(root, "raise@during_encode:s-001")  # planting again forgets the firings
    assert fault_injection.fired(root) == []
    with pytest.raises(fault_injection.PlantedError):
        fault_injection.maybe_fault("during_encode", "s-001")


_CHILD = "from pipeline import fault_injection; fault_injection.maybe_fault('after_decode', 's-7'); print('survived')"


def _child(env):
    return subprocess.run([sys.executable, "-c", _CHILD], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_kill_once_and_kill_every_time_across_processes(tmp_path):
    """A killed process forgets everything: the count lives in the directory."""
    env = {**os.environ, fault_injection.ENV: str(tmp_path), "PYTHONPATH": str(REPO)}
    fault_injection.plant(tmp_path, "kill@after_decode:s-7")
    first, second = _child(env), _child(env)
    assert first.returncode == -signal.SIGKILL and "survived" not in first.stdout
    assert second.returncode == 0 and second.stdout.strip() == "survived"
    assert [f.pid for f in fault_injection.fired(tmp_path)] != [] and len(fault_injection.fired(tmp_path)) == 1
    fault_injection.plant(tmp_path, "kill@after_decode:s-7#all")
    assert [_child(env).returncode for _ in range(3)] == [-signal.SIGKILL] * 3
    assert len(fault_injection.fired(tmp_path)) == 3


def test_killsession_kills_every_process_of_the_session(tmp_path):
    """As a Ray actor: the process that fires is in a process group of its own, inside the job's session."""
    fault_injection.plant(tmp_path, "killsession@between_renames")
    env = {**os.environ, fault_injection.ENV: str(tmp_path), "PYTHONPATH": str(REPO)}
    script = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
              "\"from pipeline import fault_injection; fault_injection.maybe_fault('between_renames', 's')\"], "
              "process_group=0); p.wait(); print('parent survived')")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, start_new_session=True, check=False)
    assert proc.returncode == -signal.SIGKILL and "survived" not in proc.stdout
    assert len(fault_injection.fired(tmp_path)) == 1  # the child fired; the parent, in another group, died with it
