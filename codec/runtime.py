"""Where and how the codec runs: device choice, precision name -> dtype, and strict fp32.

One copy of each for the job's actors, verify, the benchmarks and the GPU check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; any other name is returned as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def dtype_for(precision: str) -> torch.dtype:
    """Precision name (fp32 | bf16 | fp16) -> torch dtype; ValueError for any other name."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}") from None


def strict_fp32() -> None:
    """fp32 means fp32 in this process: turn TF32 off for cuDNN convolutions and CUDA matmuls.

    torch runs cuDNN convolutions in TF32 by default on GPUs that have it; the job's actors, verify and
    the benchmarks all call this so that their fp32 codes agree.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


DYNAMO_CONFIG = {"allow_rnn": True}  # without it dynamo breaks the encoder's graph at the LSTM (12 breaks, 13 graphs)


def compile_encoder(model):
    """model.encoder through torch.compile, with DYNAMO_CONFIG set for the process (dynamo reads it when
    the compiled encoder first runs); tests/codec/test_compile_graph.py checks it traces as one graph."""
    for key, value in DYNAMO_CONFIG.items():
        setattr(torch._dynamo.config, key, value)
    model.encoder = torch.compile(model.encoder)
    return model


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside: float reductions depend on the thread count, so what is computed
    here (the codebooks of seeded random models) comes out identical on every machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
