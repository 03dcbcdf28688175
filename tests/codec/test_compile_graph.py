"""torch.compile on the CPU: the encoder's hot path on a mixed-length batch (the CUDA batch plan: padded
batch, true-length masks, batched LSTM) traces as one graph, with no graph break and no host sync."""

import pytest
import torch

from codec import random_model
from codec.runtime import DYNAMO_CONFIG


@pytest.mark.timeout(120)
@pytest.mark.parametrize("preset, rate", [("24khz", 24000), ("48khz", 48000)])
def test_encoder_traces_as_one_graph_on_a_mixed_length_batch(preset, rate):
    model = random_model(f"random:{preset}").set_batch_plan("cuda")
    n = rate // 2
    x = torch.randn(3, model.config.audio_channels, n, generator=torch.Generator().manual_seed(0)) * 0.1
    lengths = [n, n // 2, n // 3]
    torch._dynamo.reset()
    try:
        with torch._dynamo.config.patch(**DYNAMO_CONFIG), torch.inference_mode():
            out = torch._dynamo.explain(model.encoder)(x, lengths)
    finally:
        torch._dynamo.reset()
    assert out.graph_break_count == 0, [r.reason for r in out.break_reasons]
    assert out.graph_count == 1
