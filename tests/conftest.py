import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("AUDIOTOK_CORPUS", REPO.parent / "shared" / "corpus"))


@contextmanager
def torch_threads(count: int):
    """torch runs with `count` CPU threads inside the block (as an actor with cpus_per_actor=count:
    float reductions, and so codes at near-ties, depend on the thread count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def batch_independent_kernels():
    """oneDNN off inside the block: on some CPUs (the AMD EPYC machine of 2026-12-05) it
    picks another convolution kernel for a batch of 5 than for a batch of 1, which rounds differently
    in the last bit. The native kernels compute each item the same way whatever the batch, so a test
    that a mixed-length batch equals each item alone tests the padding logic, not the kernel choice."""
    import torch

    with torch.backends.mkldnn.flags(enabled=False):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """For a whole module: under load a second torch thread made the codec ~20x slower on this 2-core machine."""
    with torch_threads(1):
        yield


DEMO_SHARDS = str(REPO / "demo" / "shards" / "demo-{000..001}.tar")  # 2 shards: 7 clips and a broken file


def run_demo_job(out: Path, overrides: list[str] | None = None) -> Path:
    """The demo shards through configs/test.yaml (+ `overrides`) into `out`, on the running Ray."""
    from pipeline.config import load_config
    from pipeline.job import run_job

    run_job(load_config(REPO / "configs" / "test.yaml", overrides), DEMO_SHARDS, str(out), log=lambda m: None)
    return out


REQUIRE_CORPUS = os.environ.get("AUDIOTOK_REQUIRE_CORPUS") == "1"  # set by .ci/run: CI always has it


def corpus_file(rel: str) -> Path:
    """A file of the shared test corpus; skips the test without it (fails under AUDIOTOK_REQUIRE_CORPUS=1)."""
    path = CORPUS / rel
    if not path.is_file():
        if REQUIRE_CORPUS:
            pytest.fail(f"test corpus file {path} missing (AUDIOTOK_REQUIRE_CORPUS=1)")
        pytest.skip(f"test corpus file {path} not available")
    return path


def real_audio(rel: str, sample_rate: int, channels: int, seconds: float | None = None) -> np.ndarray:
    """A corpus file decoded, resampled and converted to `channels` (pipeline.audio's functions): float32 [C, T]."""
    import soundfile as sf

    from pipeline.audio import convert_channels, resample

    data, sr = sf.read(corpus_file(rel), dtype="float32", always_2d=True)
    x = np.ascontiguousarray(convert_channels(resample(data, sr, sample_rate), channels).T)
    if seconds is not None:
        x = x[:, : int(seconds * sample_rate)]
    return x


def excerpts_batch(audio, lengths: list[int], stride: int):
    """A zero-padded batch [B, C, max(lengths)] of excerpts of `audio` ([C, T], a tensor or an array): item b is
    the lengths[b] samples from b * stride."""
    import torch

    x = torch.zeros(len(lengths), audio.shape[0], max(lengths))
    for b, n in enumerate(lengths):
        x[b, :, :n] = audio[:, stride * b : stride * b + n]
    return x


def copy_corpus_tree(root: Path, files: dict[str, str]) -> None:
    """Corpus files copied to `root` under the relative names of `files` ({name: corpus path}); names
    ending in .mp3 are transcoded to MP3 from their source."""
    import shutil

    import soundfile as sf

    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".mp3"):
            data, sr = sf.read(corpus_file(src))
            sf.write(root / rel, data, sr, format="MP3")
        else:
            shutil.copy(corpus_file(src), root / rel)


def noise_clips_and_codes(model, count: int, samples: int):
    """Seeded noise clips [count, C, samples] and `model`'s codes for each clip encoded alone."""
    import torch

    clips = torch.randn(count, model.config.audio_channels, samples, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode():
        return clips, [i.codes for c in clips for i in model.encode(c[None])]


def transformers_codes(ref, x, bandwidth):
    """transformers' EncodecModel on one unpadded item x [C, T] -> codes [n_q, F] (48 kHz: chunks
    concatenated), scales (None at 24 kHz), and its raw output. Under no_grad: with autograd on, its
    LSTM takes another kernel path and rounds differently."""
    import torch

    with torch.no_grad():
        out = ref.encode(x[None], bandwidth=bandwidth)
    chunks = [out.audio_codes[i, 0] for i in range(out.audio_codes.shape[0])]
    if out.last_frame_pad_length:
        chunks[-1] = chunks[-1][:, : chunks[-1].shape[-1] - out.last_frame_pad_length]
    scales = None if out.audio_scales[0] is None else [float(s) for s in out.audio_scales]
    return torch.cat(chunks, dim=-1), scales, out


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for one test module (ray.init takes seconds: once per module, not per test)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a stranger's
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
