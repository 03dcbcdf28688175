"""Training the codec itself (audio -> EnCodec weights), as opposed to `pipeline.training`, which trains
models on the tokens a job wrote.

    trainable.py   TrainableEncodec: weight norm, EMA residual VQ, export to an inference EncodecModel
"""

from .trainable import EMAQuantizer, TrainableEncodec

__all__ = ["EMAQuantizer", "TrainableEncodec"]
