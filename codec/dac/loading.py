"""The one place that reads DAC weights: `load_dac(source)`, and `save_dac(model, dir)`.

Sources:
  * a directory in the transformers layout: `config.json` (model_type "dac") + `model.safetensors`
    (or `pytorch_model.bin`, read with `torch.load(weights_only=True)`), as `save_pretrained` writes;
  * an original descript-audio-codec checkpoint (`weights_44khz_8kbps_0.0.1.pth`...), a dict with
    `state_dict` and `metadata.kwargs`, read with `torch.load(weights_only=True)` (which refuses
    pickled code);
  * `random:dac_44khz` / `random:dac_24khz` / `random:dac_16khz` (optionally `:seed=7`): seeded random
    weights with codebooks fitted to the model's own latents, for tests and demos only.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..checkpoints import fold_weight_norm
from ..framed import is_model_directory, preset_name, random_spec, read_model_directory, save_directory, with_weights
from ..interface import ModelProvenance
from ..loading import random_provenance, sha256_file
from ..runtime import one_thread
from .checkpoints import original_to_ours
from .codebooks import fit_codebooks
from .config import PRESETS, DacConfig
from .model import DacModel

ALTERNATIVES = ("a directory with config.json (model_type dac) + model.safetensors, an original DAC .pth "
                "checkpoint, or random weights " + " / ".join(f"random:{p}" for p in PRESETS))


def is_dac_directory(path: Path) -> bool:
    return is_model_directory(path, "dac")


def load_dac_directory(path: Path, name: str | None = None) -> DacModel:
    return build(*read_model_directory(path, DacConfig, PRESETS, name))


def load_dac_original(path: Path) -> DacModel:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code: say so rather than run it
        raise ValueError(f"{path} is not a checkpoint torch.load(weights_only=True) accepts: {exc}") from exc
    if not (isinstance(checkpoint, dict) and "state_dict" in checkpoint and "kwargs" in checkpoint.get("metadata", {})):
        raise ValueError(f"{path} is not an original DAC checkpoint (a dict with state_dict and metadata.kwargs)")
    kwargs = checkpoint["metadata"]["kwargs"]
    config = DacConfig.from_dict(kwargs, name=_preset_name(kwargs) or path.stem)
    state = original_to_ours(checkpoint["state_dict"], len(config.downsampling_ratios))
    return build(config, state, ModelProvenance(str(path), sha256_file(path), False))


def build(config: DacConfig, state: dict[str, torch.Tensor], provenance: ModelProvenance) -> DacModel:
    """A DacModel (eval mode) with `state`'s weights, weight norm folded; ValueError on any key or shape
    that does not match the config."""
    plain, _ = fold_weight_norm(state)
    return with_weights(DacModel(config), plain, provenance, "DAC")


def random_dac(spec: str) -> DacModel:
    """`random:<preset>[:seed=N]`: seeded weights (biases and Snake alphas non-trivial), codebooks fitted in
    the normalised projected space to the latents of 4 s of seeded noise."""
    return random_from_config(*random_spec(spec, PRESETS))


def random_from_config(config: DacConfig, seed: int = 0, fit_audio: torch.Tensor | None = None) -> DacModel:
    """Seeded random weights for any config (tests use reduced ones); codebooks fitted to the latents of
    `fit_audio` [N, 1, T] (default: 4 s of seeded noise)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DacModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("alpha"):
                param.uniform_(0.5, 2.0, generator=gen)
        if fit_audio is None:
            fit_audio = torch.randn(1, 1, config.sampling_rate * 4, generator=gen) * 0.1
        with one_thread():
            latents = model.encoder(fit_audio)
            fit_codebooks(model.quantizer, latents, generator=gen)
    model.provenance = random_provenance(model, f"random:{config.name}:seed={seed}")
    return model


def save_dac(model: DacModel, directory: str | os.PathLike) -> Path:
    """Write `config.json` + `model.safetensors` in the layout of transformers' `DacModel.save_pretrained`."""
    return save_directory(model, directory, "dac")


def _preset_name(config: dict) -> str | None:
    """The preset whose numbers `config` has (transformers' or the original's naming), if any."""
    return preset_name(DacConfig, PRESETS, config)
