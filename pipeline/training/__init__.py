"""Training on the tokens: codebook patterns, token-budget batches, distributed and resumable loading
(and `lm_check`, the small language-model check of `jobs.train_lm`). Training the codec itself is
`codec.trainer`."""

from .index import RowIndex
from .loader import TokenLoader, collate_crops
from .patterns import PATTERNS, Interleaved, Pattern, shift_right
from .plan import BatchConfig, EpochPlan, plan_epoch

__all__ = ["PATTERNS", "BatchConfig", "EpochPlan", "Interleaved", "Pattern", "RowIndex", "TokenLoader",
           "collate_crops", "plan_epoch", "shift_right"]
