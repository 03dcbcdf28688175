"""Audio codecs behind one interface (`interface.Codec`), loaded by `registry.load_codec`.

Families: EnCodec (this package's top-level files: config, model, loading...) and DAC (`dac/`).
"""

from .config import PRESETS, EncodecConfig
from .features import prepare_inputs
from .interface import Codec, EncodedItem, ModelProvenance
from .loading import load_model, random_model, save_model, sha256_file
from .model import EncodecModel
from .registry import FAMILIES, family_of, load_codec, load_first

__all__ = [
    "FAMILIES",
    "PRESETS",
    "Codec",
    "EncodecConfig",
    "EncodecModel",
    "EncodedItem",
    "ModelProvenance",
    "family_of",
    "load_codec",
    "load_first",
    "load_model",
    "prepare_inputs",
    "random_model",
    "save_model",
    "sha256_file",
]
