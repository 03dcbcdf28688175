"""transformers' HubertModel as the test-only reference, built from our config and weights (no hub)."""

from __future__ import annotations

import pytest
import torch

from codec.hubert import HubertModel
from codec.hubert.loading import transformers_state

transformers = pytest.importorskip("transformers")


def reference_of(model: HubertModel):
    """A transformers HubertModel (eval) holding `model`'s weights (its weight norm pair as drawn)."""
    fields = {k: v for k, v in model.config.to_dict().items() if k != "do_normalize"}
    ref = transformers.HubertModel(transformers.HubertConfig(**fields)).eval()
    missing, unexpected = ref.load_state_dict(transformers_state(model), strict=False)
    assert missing == ["masked_spec_embed"] and not unexpected
    return ref


@torch.inference_mode()
def reference_features(ref, model: HubertModel, item: torch.Tensor, layer: int | None) -> torch.Tensor:
    """item [T] alone, through transformers' feature extractor (do_normalize as the model's config) and
    model -> hidden_states[layer][0] [F, D] (layer None: every layer, [L + 1, F, D])."""
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=model.config.do_normalize)
    values = extractor(item.numpy(), sampling_rate=16000, return_tensors="pt").input_values
    hidden = ref(values, output_hidden_states=True).hidden_states
    return torch.stack(hidden)[:, 0] if layer is None else hidden[layer][0]
