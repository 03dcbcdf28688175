"""Training the codec itself (audio -> EnCodec weights), as opposed to `pipeline.training`, which trains
models on the tokens a job wrote.

    trainable.py   TrainableEncodec: weight norm, EMA residual VQ, export to an inference EncodecModel
    config.py      TrainConfig: the training YAML, typed, every default in one place
    data.py        the training audio: Debian packages fetched, a config's file lists resolved, clips loaded
    loop.py        train(): segments, loss, Adam + warmup/cosine, export, evaluation, training.json
    card.py        held-out evaluation per bandwidth and MODEL_CARD.md from a training record

`python -m jobs.train_codec` is the command line.
"""

from .trainable import EMAQuantizer, TrainableEncodec

__all__ = ["EMAQuantizer", "TrainableEncodec"]
