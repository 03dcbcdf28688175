"""EnCodec in pure PyTorch: config presets, true-length batched encode/decode, checkpoint loading."""

from .config import PRESETS, EncodecConfig
from .features import prepare_inputs
from .loading import load_first, load_model, random_model, save_model, sha256_file
from .model import EncodecModel, EncodedItem, ModelProvenance

__all__ = [
    "PRESETS",
    "EncodecConfig",
    "EncodecModel",
    "EncodedItem",
    "ModelProvenance",
    "load_first",
    "load_model",
    "prepare_inputs",
    "random_model",
    "save_model",
    "sha256_file",
]
