"""DAC (Descript Audio Codec) in pure PyTorch: presets, model, quantizer, checkpoint loading."""

from .config import PRESETS, DacConfig
from .loading import load_dac_directory, load_dac_original, random_dac, random_from_config, save_dac
from .model import DacModel

__all__ = ["PRESETS", "DacConfig", "DacModel", "load_dac_directory", "load_dac_original", "random_dac",
           "random_from_config", "save_dac"]
