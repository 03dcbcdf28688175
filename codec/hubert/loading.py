"""The one place that reads HuBERT weights: `load_hubert(source)`, and `save_hubert(model, dir)`.

Sources:
  * a directory in the transformers layout: `config.json` (model_type "hubert") + `model.safetensors`
    (or `pytorch_model.bin`, read with `torch.load(weights_only=True)`), as `save_pretrained` writes;
    `HubertForCTC`-style keys (`hubert.` prefix) are accepted, heads other than the encoder refused;
  * a hub id (`facebook/hubert-base-ls960`), through huggingface_hub's cache, then as a directory;
  * `random:hubert_base` / `random:hubert_large` (optionally `:seed=7`): seeded random weights of the
    full architecture, for tests and demos only (`provenance.random_weights` is True).

The position convolution's weight norm (`weight_g` / `weight_v`, or `parametrizations.weight.original0/1`,
norm over every dim but dim 2) is folded into a plain weight.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import torch

from ..framed import random_spec, with_weights
from ..interface import ModelProvenance
from ..loading import random_provenance, read_directory_weights, sha256_file
from ..runtime import one_thread
from .config import PRESETS, HubertConfig
from .model import HubertModel

ALTERNATIVES = ("a directory with config.json (model_type hubert) + model.safetensors or pytorch_model.bin, "
                "a hub id such as facebook/hubert-base-ls960, or random weights "
                + " / ".join(f"random:{p}" for p in PRESETS))

_POS_G = re.compile(r"^encoder\.pos_conv_embed\.conv\.(?:weight_g|parametrizations\.weight\.original0)$")
_POS_V = re.compile(r"^encoder\.pos_conv_embed\.conv\.(?:weight_v|parametrizations\.weight\.original1)$")
_POS_WEIGHT = "encoder.pos_conv_embed.conv.weight"
_TRAINING_ONLY = ("masked_spec_embed",)


def is_hubert_directory(path: Path) -> bool:
    config = path / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "hubert"


def load_hubert(source: str | os.PathLike, device: str | torch.device = "cpu") -> HubertModel:
    """An eval-mode HubertModel from `source` (see the module docstring) on `device`; ValueError naming the
    alternatives when the source is none of them."""
    text = str(source)
    path = Path(text).expanduser()
    if text.startswith("random:"):
        model = random_hubert(text)
    elif path.is_dir():
        if not is_hubert_directory(path):
            raise ValueError(f"{path} has no config.json with model_type 'hubert'; expected {ALTERNATIVES}")
        model = load_hubert_directory(path)
    elif text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from ..loading import _hub_snapshot

        model = load_hubert_directory(_hub_snapshot(text), name=text)
    else:
        raise ValueError(f"HuBERT source {text!r} not found; expected {ALTERNATIVES}")
    return model.to(device).eval()


def load_hubert_directory(path: Path, name: str | None = None) -> HubertModel:
    data = json.loads((path / "config.json").read_text())
    config = HubertConfig.from_dict(data, name=name or _preset_name(data) or path.name)
    state, weights = read_directory_weights(path)
    return build(config, state, ModelProvenance(name or str(path), sha256_file(weights), False))


def to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' HubertModel (or `hubert.`-prefixed) keys -> ours: weight norm folded, training-only
    tensors dropped; ValueError when the g or v half of the weight norm is missing."""
    out, g, v = {}, None, None
    for key, value in state.items():
        key = key.removeprefix("hubert.")
        if key in _TRAINING_ONLY:
            continue
        if _POS_G.match(key):
            g = value
        elif _POS_V.match(key):
            v = value
        else:
            out[key] = value
    if (g is None) != (v is None):
        raise ValueError(f"the position convolution's weight norm is missing its {'g' if g is None else 'v'} tensor")
    if g is not None:
        out[_POS_WEIGHT] = torch._weight_norm(v.float(), g.float(), 2)
    return out


def build(config: HubertConfig, state: dict[str, torch.Tensor], provenance: ModelProvenance) -> HubertModel:
    """A HubertModel (eval mode) with `state`'s weights; ValueError on any key or shape that does not match."""
    return with_weights(HubertModel(config), to_ours(state), provenance, "HuBERT")


def random_hubert(spec: str) -> HubertModel:
    """`random:hubert_base|hubert_large[:seed=N]`: seeded random weights of the full architecture."""
    with one_thread():  # the weight norm's reduction depends on the thread count: same weights in every process
        return random_from_config(*random_spec(spec, PRESETS))


@torch.no_grad()
def random_from_config(config: HubertConfig, seed: int = 0) -> HubertModel:
    """Seeded weights for any config (tests name their reduced configs): every matrix and kernel drawn
    N(0, 1 / fan_in), biases and norm offsets U(-0.1, 0.1), norm scales U(0.8, 1.2); identical on every
    machine (one CPU generator, parameters in a fixed order)."""
    gen = torch.Generator().manual_seed(seed)
    model = HubertModel(config)
    for name, param in model.named_parameters():
        if name == _POS_WEIGHT:  # drawn as its weight norm pair, kept for saving (transformers folds it the same way)
            v = torch.randn(param.shape, generator=gen) / math.sqrt(math.prod(param.shape[1:]))
            g = torch.norm_except_dim(v, 2, 2) * (torch.rand(1, 1, param.shape[2], generator=gen) * 0.4 + 0.8)
            param.copy_(torch._weight_norm(v, g, 2))
            model.weight_norm_pair = (g, v)
        elif isinstance(_owner(model, name), (torch.nn.LayerNorm, torch.nn.GroupNorm)) and name.endswith("weight"):
            param.copy_(torch.rand(param.shape, generator=gen) * 0.4 + 0.8)
        elif name.endswith("bias"):
            param.copy_(torch.rand(param.shape, generator=gen) * 0.2 - 0.1)
        else:
            fan_in = math.prod(param.shape[1:])
            param.copy_(torch.randn(param.shape, generator=gen) / math.sqrt(fan_in))
    model.provenance = random_provenance(model, f"random:{config.name}:seed={seed}")
    return model.eval()


def _owner(model: torch.nn.Module, name: str) -> torch.nn.Module:
    return model.get_submodule(name.rsplit(".", 1)[0])


def transformers_state(model: HubertModel) -> dict[str, torch.Tensor]:
    """Our state dict in transformers' naming, fp32 on CPU: the position convolution's weight as its weight
    norm pair (the pair a random model was drawn from, else g = the norm over every dim but 2, v = the weight)."""
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    weight = state.pop(_POS_WEIGHT)
    g, v = getattr(model, "weight_norm_pair", None) or (torch.norm_except_dim(weight, 2, 2), weight)
    state["encoder.pos_conv_embed.conv.parametrizations.weight.original0"] = g.contiguous()
    state["encoder.pos_conv_embed.conv.parametrizations.weight.original1"] = v.contiguous()
    return state


def save_hubert(model: HubertModel, directory: str | os.PathLike) -> Path:
    """Write `config.json` + `model.safetensors` in the layout of transformers' `HubertModel.save_pretrained`."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {**model.config.to_dict(), "model_type": "hubert", "architectures": ["HubertModel"]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(transformers_state(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def _preset_name(data: dict) -> str | None:
    try:
        ours = HubertConfig.from_dict(data)
    except (TypeError, ValueError):
        return None
    return next((name for name, preset in PRESETS.items() if preset == ours), None)
