"""The op-level A/B (pipeline/bench/op_profile.py): what one side measures, and what the report compares."""

import copy
import hashlib

import numpy as np
import torch

from codec import load_model
from pipeline.bench import op_profile
from tests.conftest import corpus_file


def test_measure_profiles_the_batched_encode_and_its_codes_equal_items_alone():
    corpus_file("speech/librivox_0870_16k.wav")  # the batch is built from the corpus (skips without it)
    model = load_model("random:24khz")
    settings = op_profile.OpSettings(reps=1, items=2, clip_s=1.5)
    result = op_profile.measure(settings, model)
    x, lengths = op_profile.speech_batch(model.sample_rate, 2, 1.5)
    assert lengths == [36000, 36000]
    alone = hashlib.sha256()
    for b, n in enumerate(lengths):
        alone.update(model.encode(x[b : b + 1, :, :n])[0].codes.numpy().astype(np.int16).tobytes())
    assert result["codes_sha256"] == alone.hexdigest()
    assert result["audio_s"] == sum(lengths) / model.sample_rate
    assert len(result["timed"]) == 1 and result["timed"][0]["user_s"] > 0
    convs = [op for op in result["ops"] if op["name"] == "aten::conv1d"]
    assert convs and sum(op["count"] for op in convs) > 2 * 10  # each item: every conv layer of the encoder
    assert sum(op["flops"] for op in result["ops"]) > 1e9  # the quantizer's GEMMs at least
    conv_cpu = [op for op in result["op_cpu"] if op["name"] == "aten.conv1d"]
    assert sum(op["count"] for op in conv_cpu) == sum(op["count"] for op in convs)
    assert sum(op["cpu_ns"] for op in conv_cpu) > 0
    assert result["codec"].startswith(str(op_profile.corpus.Path(__file__).resolve().parents[3]))


def _run(ops, codes="ab" * 32, conv_ms=100.0):
    return {"codec": "x", "codes_sha256": codes, "audio_s": 10.0,
            "timed": [{"user_s": 1.0, "sys_s": 0.1, "minflt": 100, "wall_s": 1.2}],
            "ops": [{"name": n, "shapes": s, "count": c, "self_us": 1.0, "flops": 0} for n, s, c in ops],
            "op_cpu": [{"name": "aten.conv1d", "layout": "[((1, 1, 100), True)]", "count": 3,
                        "cpu_ns": int(conv_ms * 1e6)}]}


def test_report_names_what_differs_between_sides():
    ops = [("aten::conv1d", "[[1, 1, 100]]", 3), ("aten::mul", "[[1, 100], [1, 100]]", 1)]
    same = op_profile.report({"old": [_run(ops)], "new": [_run(ops, conv_ms=110.0)]})
    assert "codes: identical" in same
    assert "0 keys with different counts (same ops, same inputs)" in same
    assert "aten.conv1d" in same and "1.100" in same  # CPU ratio new / old
    extra = copy.deepcopy(ops) + [("aten::masked_fill", "[[8, 100]]", 2)]
    differ = op_profile.report({"old": [_run(ops)], "new": [_run(extra, codes="cd" * 32)]})
    assert "codes: DIFFER" in differ
    assert "1 keys with different counts:" in differ
    assert "aten::masked_fill" in differ and "0 -> 2" in differ


def test_run_side_refuses_a_tree_whose_codec_is_not_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(op_profile.subprocess, "run", lambda *a, **k: _Done())

    def fake_loads(_text):
        return {**_run([]), "codec": "/elsewhere/codec/__init__.py"}

    monkeypatch.setattr(op_profile.json, "loads", fake_loads)
    monkeypatch.setattr(op_profile.Path, "read_text", lambda self: "{}")
    try:
        op_profile.run_side(tmp_path, op_profile.OpSettings())
    except RuntimeError as exc:
        assert "imported codec from /elsewhere" in str(exc)
    else:
        raise AssertionError("a side importing another tree's codec was accepted")


class _Done:
    returncode = 0
    stderr = ""


def test_op_cpu_counts_each_top_level_op_once():
    with op_profile.OpCPU() as timer:
        a = torch.ones(4, 5)
        (a * 2).sum()
    names = {row["name"]: row["count"] for row in timer.rows()}
    assert names.get("aten.mul") == 1 and names.get("aten.sum") == 1
