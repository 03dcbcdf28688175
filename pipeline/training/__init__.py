"""Training on the tokens: codebook patterns, token-budget batches, distributed and resumable loading."""

from .index import RowIndex
from .loader import TokenLoader, collate_crops
from .patterns import PATTERNS, Interleaved, Pattern, shift_right
from .plan import BatchConfig, EpochPlan, plan_epoch

__all__ = ["PATTERNS", "BatchConfig", "EpochPlan", "Interleaved", "Pattern", "RowIndex", "TokenLoader",
           "collate_crops", "plan_epoch", "shift_right"]
