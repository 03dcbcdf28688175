"""HuBERT (base, large) in pure PyTorch: presets, model, loading; features of one layer, padding-exact."""

from .config import PRESETS, HubertConfig
from .loading import load_hubert, random_from_config, random_hubert, save_hubert
from .model import HubertModel, TooShort

__all__ = ["PRESETS", "HubertConfig", "HubertModel", "TooShort", "load_hubert", "random_from_config",
           "random_hubert", "save_hubert"]
