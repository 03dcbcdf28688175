"""Mimi (kyutai) in pure PyTorch: config, causal SEANet, transformers, split RVQ, model, checkpoint loading."""

from .config import PRESETS, MimiConfig
from .loading import load_mimi_directory, load_mimi_file, random_from_config, random_mimi, save_mimi
from .model import MimiModel

__all__ = ["PRESETS", "MimiConfig", "MimiModel", "load_mimi_directory", "load_mimi_file", "random_from_config",
           "random_mimi", "save_mimi"]
