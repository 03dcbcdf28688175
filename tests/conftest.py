import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("AUDIOTOK_CORPUS", REPO.parent / "shared" / "corpus"))


def corpus_file(rel: str) -> Path:
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(f"test corpus file {path} not available")
    return path


def real_audio(rel: str, sample_rate: int, channels: int, seconds: float | None = None) -> np.ndarray:
    """A corpus file decoded, converted to `channels` and resampled: float32 [C, T]."""
    import soundfile as sf
    import soxr

    data, sr = sf.read(corpus_file(rel), dtype="float32", always_2d=True)
    if sr != sample_rate:
        data = soxr.resample(data, sr, sample_rate).astype(np.float32)
    if channels == 1:
        data = data.mean(axis=1, keepdims=True)
    elif data.shape[1] == 1:
        data = np.repeat(data, 2, axis=1)
    x = np.ascontiguousarray(data[:, :channels].T)
    if seconds is not None:
        x = x[:, : int(seconds * sample_rate)]
    return x


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for one test module (ray.init takes seconds: once per module, not per test)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def fault_inputs(tmp_path_factory):
    """(spec, reference Outcome) of the fault suite's input: 8 shards x 4 real clips, tokenized once without faults."""
    from tests import fault_scenarios as fs

    root = tmp_path_factory.mktemp("fault-inputs")
    spec = fs.make_shards(root / "in")
    return spec, fs.reference(spec, fs.demo_config(), root / "reference")


def pytest_terminal_summary(terminalreporter):
    """Print the fault table (tests/fault_scenarios.py) when fault tests ran."""
    import sys

    scenarios = sys.modules.get("tests.fault_scenarios")
    if scenarios is not None and scenarios.ROWS:
        terminalreporter.write_sep("=", "fault table")
        for line in scenarios.format_table(scenarios.ROWS).splitlines():
            terminalreporter.write_line(line)
