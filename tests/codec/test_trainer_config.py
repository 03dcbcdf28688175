"""codec.trainer.config: the training YAML typed, defaults in one place, bad keys named."""

from __future__ import annotations

import pytest

from codec.trainer.config import TrainConfig, apply_override, load_config
from tests.conftest import REPO


def test_shipped_configs_type_and_defaults_fill_in():
    stage1 = TrainConfig.from_dict(load_config(REPO / "configs" / "train_tiny.yaml"))
    stage2 = TrainConfig.from_dict(load_config(REPO / "configs" / "train_tiny_stage2.yaml"))
    assert stage1.train.dead_threshold == 2.0 and stage1.train.init_from is None  # defaults
    assert stage1.data.lowpass_prob == 0.0 and stage1.data.lowpass_hz == []
    assert stage2.train.dead_threshold == 0.25 and stage2.train.init_from == "models/tiny-24khz"
    assert stage2.data.lowpass_hz == [4000, 8000, 11025] and stage2.data.train == stage1.data.train
    assert "train" not in stage1.data.settings() and stage1.data.settings()["segment_s"] == 0.5


def test_unknown_and_missing_keys_are_named():
    raw = load_config(REPO / "configs" / "train_tiny.yaml")
    apply_override(raw, "train.stesp=10")
    with pytest.raises(ValueError, match=r"train: unknown keys \['stesp'\]"):
        TrainConfig.from_dict(raw)
    raw = load_config(REPO / "configs" / "train_tiny.yaml")
    del raw["loss"]["mel"]
    with pytest.raises(ValueError, match=r"loss: missing keys \['mel'\]"):
        TrainConfig.from_dict(raw)
    with pytest.raises(ValueError, match="existing section"):
        apply_override(raw, "nosuch.key=1")
    apply_override(raw, "loss.si_snr=0.2")
    assert raw["loss"]["si_snr"] == 0.2
