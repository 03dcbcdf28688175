"""What an actor checks before it takes shards: storage it can see, and GPU honesty (no Ray)."""

from __future__ import annotations

import pytest

from pipeline import writer
from pipeline.engine.actor_env import SIMULATED_GPUS_ENV, check_storage, resolve_runtime
from pipeline.errors import JobFailed
from pipeline.records import Shard
from pipeline.sources.common import input_root


def test_output_marker_and_input_root_must_be_visible(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    data.mkdir()
    writer.write_run_marker(str(out), "run-1")
    check_storage(str(out), "run-1", str(data), {}, "node-a")
    with pytest.raises(JobFailed, match=r"cannot see the output directory .*_run.json of this run"):
        check_storage(str(out), "run-2", str(data), {}, "node-a")  # another run's marker: not the driver's dir
    with pytest.raises(JobFailed, match="cannot see the output directory"):
        check_storage(str(tmp_path / "elsewhere"), "run-1", str(data), {}, "node-a")
    with pytest.raises(JobFailed, match=r"cannot see the input's root .*/missing"):
        check_storage(str(out), "run-1", str(tmp_path / "missing"), {}, "node-a")


def test_input_root_is_the_fixed_part_of_the_shards_urls(tmp_path):
    tars = [Shard("a", str(tmp_path / "x" / "s-000.tar"), "webdataset"),
            Shard("b", str(tmp_path / "x" / "y" / "s-001.tar"), "webdataset")]
    assert input_root(tars) == str(tmp_path / "x")
    files = [Shard("c", f"{tmp_path}/wavs/**/*.wav#files=0-8", "audio_files")]
    assert input_root(files) == f"{tmp_path}/wavs"
    assert input_root([Shard("d", "s3://bucket/corpus/s-000.tar", "webdataset"),
                       Shard("e", "s3://bucket/corpus/s-001.tar", "webdataset")]) == "s3://bucket/corpus"
    assert input_root([Shard("h", "hf:some/dataset/train#shard=0-of-2", "hf")]) is None


def test_gpu_without_cuda_fails_with_the_reason_unless_simulated(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.delenv(SIMULATED_GPUS_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        with pytest.raises(JobFailed, match=r"holds GPU\(s\) \[0\] but cannot use CUDA: torch .* CPU-only build"):
            resolve_runtime("cuda", [0], 1)
        monkeypatch.setenv(SIMULATED_GPUS_ENV, "1")
        runtime = resolve_runtime("cuda", [0], 2)
        assert (runtime.device, runtime.simulated_gpu, runtime.torch_threads) == ("cpu", True, 2)
        assert torch.get_num_threads() == 2 and not torch.backends.cudnn.allow_tf32
        assert resolve_runtime("cpu", [], 1).simulated_gpu is False
    finally:
        torch.set_num_threads(before)
