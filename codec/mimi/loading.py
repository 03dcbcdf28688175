"""The one place that reads Mimi weights, and `save_mimi(model, dir)`.

Sources:
  * a directory in the transformers layout: `config.json` (model_type "mimi") + `model.safetensors` (or
    `pytorch_model.bin`, read with `torch.load(weights_only=True)`), as `save_pretrained` writes and
    `kyutai/mimi` on the hub holds;
  * an original kyutai checkpoint (`tokenizer-e351c8d8-checkpoint125.safetensors`, the moshi layout; the
    architecture is `MimiConfig()`'s, which is kyutai/mimi's);
  * `random:mimi` (optionally `:seed=N`): seeded random weights with codebooks fitted to the model's own
    latents of seeded synthetic audio (`random_from_config` takes other audio), for tests and demos only.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..framed import is_model_directory, random_spec, read_model_directory, save_directory, with_weights
from ..interface import ModelProvenance
from ..loading import random_provenance, sha256_file
from ..runtime import one_thread
from .checkpoints import is_original, original_to_ours, transformers_to_ours
from .codebooks import fit_codebooks
from .config import PRESETS, MimiConfig
from .model import MimiModel


def is_mimi_directory(path: Path) -> bool:
    return is_model_directory(path, "mimi")


def load_mimi_directory(path: Path, name: str | None = None) -> MimiModel:
    config, state, provenance = read_model_directory(path, MimiConfig, PRESETS, name)
    state = original_to_ours(state, config.num_attention_heads) if is_original(state) else transformers_to_ours(state)
    return build(config, state, provenance)


def load_mimi_file(path: Path) -> MimiModel:
    """A single .safetensors file: kyutai's original layout, or transformers' (with the default config)."""
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ValueError(f"{path} is not a safetensors file: {exc}") from exc
    config = PRESETS["mimi"]
    if is_original(state):
        state = original_to_ours(state, config.num_attention_heads)
    else:
        state = transformers_to_ours(state)
    return build(config, state, ModelProvenance(str(path), sha256_file(path), False))


def build(config: MimiConfig, state: dict[str, torch.Tensor], provenance: ModelProvenance) -> MimiModel:
    """A MimiModel (eval mode) with `state`'s weights; ValueError on any missing key or wrong shape."""
    return with_weights(MimiModel(config), state, provenance, "Mimi")


def random_mimi(spec: str) -> MimiModel:
    """`random:mimi[:seed=N]` (see the module docstring)."""
    return random_from_config(*random_spec(spec, PRESETS))


def synthetic_audio(seconds: float, rate: int, generator: torch.Generator) -> torch.Tensor:
    """[1, 1, T] seeded noise in 0.5 s segments of random loudness plus random tones: more varied latents
    than stationary noise."""
    steps = int(seconds * rate)
    segments = max(1, int(seconds * 2))
    gains = torch.rand(segments, generator=generator).repeat_interleave(-(-steps // segments))[:steps]
    t = torch.arange(steps) / rate
    freqs = 80 + 3000 * torch.rand(segments, generator=generator).repeat_interleave(-(-steps // segments))[:steps]
    tones = torch.sin(2 * torch.pi * freqs * t)
    audio = 0.1 * gains * torch.randn(steps, generator=generator) + 0.2 * (1 - gains) * tones
    return audio[None, None]


def random_from_config(config: MimiConfig, seed: int = 0, fit_audio: torch.Tensor | None = None) -> MimiModel:
    """Seeded random weights (torch's default initialisation) for any config; codebooks fitted to the latents of
    `fit_audio` [N, 1, T] at the model's rate (default: 10 s of `synthetic_audio`)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MimiModel(config).eval()
    with one_thread(), torch.no_grad():
        if fit_audio is None:
            fit_audio = synthetic_audio(10.0, config.sampling_rate, gen)
        latents = torch.cat([model.latents(fit_audio[i: i + 1]) for i in range(fit_audio.shape[0])], dim=-1)
        fit_codebooks(model.quantizer, latents, generator=gen)
    model.provenance = random_provenance(model, f"random:{config.name}:seed={seed}")
    return model


def save_mimi(model: MimiModel, directory: str | os.PathLike) -> Path:
    """Write `config.json` + `model.safetensors` in the layout of transformers' `MimiModel.save_pretrained`
    (with the codebooks' `initialized` flags it writes)."""
    flags = {k.replace("cluster_usage", "initialized"): torch.ones(1) for k in model.state_dict()
             if k.endswith("codebook.cluster_usage")}
    return save_directory(model, directory, "mimi", flags)

