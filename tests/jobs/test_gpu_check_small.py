"""The GPU check's pieces that need neither a GPU nor the full CPU run: offline environment, Ray's GPU
count checked before any actor waits, and the emulated TF32 variant row on the CPU."""

import os

import pytest

from codec import random_model
from jobs.gpu_check import cli
from pipeline.bench.gpu_check import codec_rows, env_row
from pipeline.engine import ray_backend
from pipeline.engine.placement import Node
from tests.conftest import noise_clips_and_codes


def test_hub_and_datasets_are_offline_from_the_start(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert cli.main(["--budget-s", "0"]) == 2  # a bad argument: returns before any check runs
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_a_ray_without_gpus_fails_the_env_row_at_once(monkeypatch):
    monkeypatch.setattr(env_row, "ensure_ray", lambda: None)
    monkeypatch.setattr(ray_backend, "alive_nodes", lambda: [Node("n", 2.0)])

    def no_actor(*args, **kwargs):
        raise AssertionError("an actor was started")

    monkeypatch.setattr(ray_backend, "run_on_actors", no_actor)
    rows = env_row.env_rows(gpu=True)
    assert [(r.name, r.status, r.value) for r in rows] == [("GPU seen by Ray", "fail", "0 GPUs")]


def test_tf32_is_emulated_on_the_cpu():
    base = random_model("random:24khz")
    clips, reference = noise_clips_and_codes(base, 2, 12000)
    fitted = codec_rows.Fitted("24khz", base, clips, reference, "noise clips")
    rows = codec_rows.variant_rows(fitted, "cpu", "tf32")
    assert [r.name for r in rows] == ["24khz tf32 (emulated) 6 kbps", "24khz tf32 (emulated) 24 kbps"]
    assert all(0 < r.data["agreement_pct"] <= 100 for r in rows)
    assert codec_rows.variant_rows(fitted, "cpu", "fp16")[0].status == "skipped"


@pytest.fixture(autouse=True)
def _restore_env():
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_family_rows_run_through_the_codec_interface():
    from pipeline.bench.gpu_check import family_rows, sizes

    row = family_rows.family_row("random:mimi", "cpu", sizes.CPU)
    assert row.section == "families" and row.status == "ok", row
    assert row.data["agreement_pct"] == 100.0 and row.data["batch"] == 2 and row.data["realtime"] > 0
