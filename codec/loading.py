"""The one place that reads and writes weights: `load_model(source)` and `save_model(model, dir)`.

Sources:
  * a directory in the transformers layout: `config.json` + `model.safetensors` (or
    `pytorch_model.bin`, read with `torch.load(weights_only=True)`);
  * an original EnCodec checkpoint file (`encodec_24khz-d7cc33bc.th`, `encodec_48khz-7e698e3e.th`);
  * a hub id (`facebook/encodec_24khz`), through huggingface_hub's cache when it is installed;
  * `tiny:24khz`: the small model trained by this project and shipped in the repository
    (`models/tiny-24khz`, see its MODEL_CARD.md; `jobs.train_codec` made it): real but low-quality
    reconstructions, for offline demos and pipeline checks;
  * `random:24khz` / `random:32khz` / `random:48khz` (optionally `random:24khz:seed=7`): seeded
    random weights with non-trivial codebooks, for tests and demos only;
    `model.provenance.random_weights` is True.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .checkpoints import detect_preset, fold_weight_norm, original_to_transformers, unfold_weight_norm
from .codebook_fitting import fit_codebooks
from .config import PRESETS, EncodecConfig
from .interface import ModelProvenance
from .model import EncodecModel
from .precision import check_precision
from .runtime import one_thread

TINY_MODELS = {"tiny:24khz": Path(__file__).resolve().parents[1] / "models" / "tiny-24khz"}

_ALTERNATIVES = (
    "a local directory with config.json + model.safetensors (e.g. written by transformers' "
    "save_pretrained), an original checkpoint file such as encodec_24khz-d7cc33bc.th, tiny:24khz, "
    "or random weights random:24khz / random:32khz / random:48khz"
)


def load_model(source: str | os.PathLike, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> EncodecModel:
    """Build an inference-ready EncodecModel (weight norm folded, eval mode) from `source`.

    dtype bfloat16 / float16: weights and activations in that type, the quantizer in fp32; the
    model must first pass `check_precision` on `device` (PrecisionError otherwise, which
    `registry.load_first` does not swallow: no silent fallback to another model)."""
    text = str(source)
    if text.startswith("random:"):
        model = random_model(text)
    elif text.startswith("tiny:"):
        if text not in TINY_MODELS or not TINY_MODELS[text].is_dir():
            raise ValueError(f"tiny model {text!r} not found; shipped: "
                             f"{[k for k, v in TINY_MODELS.items() if v.is_dir()]} (in the repository's models/)")
        model = _load_directory(TINY_MODELS[text], name=text)
        model.provenance.model_card = str(TINY_MODELS[text] / "MODEL_CARD.md")
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            model = _load_directory(path)
        elif path.is_file():
            model = _load_original(path)
        elif "/" in text and not text.startswith((".", "/")) and text.count("/") == 1:
            model = _load_directory(_hub_snapshot(text), name=text)
        else:
            raise ValueError(f"model source {text!r} not found; expected {_ALTERNATIVES}, or a hub id")
    model.eval()
    reference = copy.deepcopy(model).to(device) if dtype != torch.float32 else None
    model.to(device=device, dtype=dtype)
    model.quantizer.float()  # RVQ distances stay fp32
    if reference is not None:
        check_precision(reference, model)  # raises on a wrong reduced-precision kernel
    return model


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _build(config: EncodecConfig, state: dict[str, torch.Tensor], provenance: ModelProvenance) -> EncodecModel:
    plain, pairs = fold_weight_norm(state)
    model = EncodecModel(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(plain)), sorted(set(plain) - expected)
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the config: missing {missing[:10]}, unexpected {unexpected[:10]}")
    for key, value in plain.items():
        if value.shape != model.state_dict()[key].shape:
            raise ValueError(f"tensor {key!r} has shape {tuple(value.shape)}, "
                             f"expected {tuple(model.state_dict()[key].shape)}")
    model.load_state_dict(plain)
    model.weight_norm_pairs = pairs
    model.provenance = provenance
    return model


def read_directory_weights(path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """(state dict, the file read) of a transformers directory: `model.safetensors`, else
    `pytorch_model.bin` read with `torch.load(weights_only=True)`."""
    if (path / "model.safetensors").is_file():
        weights = path / "model.safetensors"
        return load_file(str(weights)), weights
    elif (path / "pytorch_model.bin").is_file():
        weights = path / "pytorch_model.bin"
        return torch.load(weights, map_location="cpu", weights_only=True), weights
    else:
        raise ValueError(f"{path} has neither model.safetensors nor pytorch_model.bin")


def _load_directory(path: Path, name: str | None = None) -> EncodecModel:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{path} has no config.json; expected {_ALTERNATIVES}")
    config = EncodecConfig.from_dict(json.loads(config_path.read_text()), name=name or path.name)
    state, weights = read_directory_weights(path)
    return _build(config, state, ModelProvenance(name or str(path), sha256_file(weights), False))


def _load_original(path: Path) -> EncodecModel:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "best_state" in state:  # training checkpoints wrap the weights
        state = state["best_state"]
    preset = detect_preset(state, path.name)
    return _build(PRESETS[preset], original_to_transformers(state),
                  ModelProvenance(str(path), sha256_file(path), False))


def _hub_snapshot(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ValueError(f"{repo_id!r} looks like a hub id but huggingface_hub is not installed "
                         f"(pip install huggingface_hub); alternatives: {_ALTERNATIVES}") from exc
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["config.json", "*.safetensors", "*.bin"]))
    except Exception as exc:  # offline, unknown repo, auth: all mean "not available here"
        raise ValueError(f"cannot get {repo_id!r} from the hub or its local cache ({type(exc).__name__}: {exc}); "
                         f"alternatives: {_ALTERNATIVES}") from exc


def random_model(spec: str = "random:24khz") -> EncodecModel:
    """Seeded random weights (weight norm pairs kept) and codebooks fitted to the model's own latents."""
    parts = spec.split(":")
    preset = parts[1] if len(parts) > 1 else ""
    seed = int(parts[2].removeprefix("seed=")) if len(parts) > 2 else 0
    if preset not in PRESETS:
        raise ValueError(f"unknown random preset {spec!r}; choose one of {['random:' + p for p in PRESETS]}")
    config = PRESETS[preset]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = EncodecModel(config)
    pairs = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.uniform_(0.8, 1.2, generator=gen)
                module.bias.uniform_(-0.1, 0.1, generator=gen)
            if config.norm_type == "weight_norm" and isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                v = module.weight.detach().clone()
                scale = torch.empty(v.shape[0], *[1] * (v.ndim - 1)).uniform_(0.8, 1.2, generator=gen)
                g = torch.norm_except_dim(v, 2, 0) * scale
                module.weight.copy_(torch._weight_norm(v, g, 0))
                pairs[name] = (g, v)
        noise = torch.randn(1, config.audio_channels, config.sampling_rate * 4, generator=gen) * 0.1
        with one_thread():
            latents, _ = model.encoder(noise)
        fit_codebooks(model.quantizer, latents[0].t().contiguous(), iters=0, generator=gen)
    model.weight_norm_pairs = pairs
    model.provenance = random_provenance(model, f"random:{preset}:seed={seed}")
    return model


def random_provenance(model: torch.nn.Module, source: str) -> ModelProvenance:
    """Provenance of seeded random weights: the sha256 of the state dict's bytes stands for a checkpoint's."""
    state_bytes = b"".join(t.numpy().tobytes() for t in model.state_dict().values())
    return ModelProvenance(source, hashlib.sha256(state_bytes).hexdigest(), True)


def save_model(model: EncodecModel, directory: str | os.PathLike) -> Path:
    """Write `config.json` + `model.safetensors` that transformers' `EncodecModel.from_pretrained` loads."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {**model.config.to_dict(), "model_type": "encodec", "architectures": ["EncodecModel"]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    pairs = getattr(model, "weight_norm_pairs", {})
    state = {}
    for key, value in model.state_dict().items():
        prefix = key.removesuffix(".weight")
        is_conv = key.endswith(".conv.weight") and model.config.norm_type == "weight_norm"
        if is_conv:
            g, v = pairs.get(prefix) or unfold_weight_norm(value.float().cpu())
            state[prefix + ".parametrizations.weight.original0"] = g
            state[prefix + ".parametrizations.weight.original1"] = v
        else:
            state[key] = value
    for k, layer in enumerate(model.quantizer.layers):
        embed = layer.codebook.embed
        state[f"quantizer.layers.{k}.codebook.inited"] = torch.ones(1)
        state[f"quantizer.layers.{k}.codebook.cluster_size"] = torch.zeros(embed.shape[0])
        state[f"quantizer.layers.{k}.codebook.embed_avg"] = embed.clone()
    save_file({k: v.detach().float().cpu().contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    return out
