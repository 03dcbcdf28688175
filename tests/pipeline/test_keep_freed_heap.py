"""host_memory.keep_freed_heap: torch's host tensors are not faulted in again once the heap holds them."""

import json
import platform
import subprocess
import sys

import pytest

from tests.conftest import REPO

_PROBE = """
import json, resource, sys
import torch
from pipeline.host_memory import keep_freed_heap
applied = keep_freed_heap() if sys.argv[1] == "keep" else None
faults = []
for _ in range(12):  # a 64 MiB activation made and freed, as an encoder layer does on every pass
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    activation = torch.empty(16 << 20)
    activation.fill_(1.0)
    del activation
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_freed_heap_is_reused_without_page_faults():
    default = _probe("default")
    kept = _probe("keep")
    assert kept["applied"] is True
    # 64 MiB is 16,384 pages of 4 KiB: by default each pass maps fresh memory and faults it all in again
    assert min(default["faults"][-3:]) > 8000
    # torch's aligned allocations leave each freed block a little short of the next request until freed
    # blocks merge (here after ~8 passes; an encode's many sizes warm up within its first pass)
    assert max(kept["faults"][-2:]) < 500  # once warm, the heap's block is reused
