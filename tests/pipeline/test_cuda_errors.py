"""pipeline.cuda_errors on the messages PyTorch, cuBLAS and cuDNN really print."""

from __future__ import annotations

import pytest
import torch

from pipeline.cuda_errors import is_fatal_cuda_error, is_out_of_memory

_HINT = ("\nCUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace "
         "below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
         "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")
_ACCELERATOR = getattr(torch, "AcceleratorError", RuntimeError)  # torch >= 2.8

FATAL = [
    "CUDA error: an illegal memory access was encountered" + _HINT,
    ("CUDA error: device-side assert triggered\nSearch for `cudaErrorAssert' in "
     "https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html for more information." + _HINT),
    "CUDA error: unspecified launch failure" + _HINT,
    "CUDA error: misaligned address" + _HINT,
    "CUDA error: an illegal instruction was encountered" + _HINT,
    "CUDA error: the launch timed out and was terminated" + _HINT,
    "CUDA error: uncorrectable ECC error encountered" + _HINT,
    "CUDA error: uncorrectable NVLink error detected during the execution" + _HINT,
    "CUDA error: hardware stack error" + _HINT,
    "CUDA error: invalid program counter" + _HINT,
    "CUDA error: unknown error" + _HINT,
    "CUDA error: Invalid access of peer GPU memory over nvlink or a hardware error" + _HINT,
    "CUDA driver error: an illegal memory access was encountered",
    ("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k, "
     "&alpha, a, lda, b, ldb, &beta, c, ldc)`"),
    "CUDA error: CUBLAS_STATUS_INTERNAL_ERROR when calling `cublasGemmEx(...)`",
    "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED",
    ("[PG ID 2 PG GUID 3 Rank 2] Process group watchdog thread terminated with exception: CUDA error: "
     "an illegal memory access was encountered" + _HINT),
]
NOT_FATAL = [
    ("CUDA out of memory. Tried to allocate 196.00 MiB. GPU 0 has a total capacity of 79.15 GiB of which "
     "120.00 MiB is free."),
    "CUDA error: out of memory" + _HINT,
    "CUDA error: invalid argument" + _HINT,
    ("CUDA error: no kernel image is available for execution on the device\nSearch for "
     "`cudaErrorNoKernelImageForDevice' in https://docs.nvidia.com/cuda/cuda-runtime-api/" + _HINT),
    "CUDA error: operation not permitted when stream is capturing" + _HINT,
    "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
    "Given groups=1, weight of size [32, 1, 7], expected input[1, 2, 24000] to have 1 channels",
    "shard s-001.tar failed: an unknown error in the reader",  # our words, not CUDA's
    "misaligned address in the tar header of k1-2.flac",
]


@pytest.mark.parametrize("message", FATAL)
def test_errors_that_poison_the_context(message):
    assert is_fatal_cuda_error(_ACCELERATOR(message)) and is_fatal_cuda_error(RuntimeError(message))
    assert not is_out_of_memory(RuntimeError(message))


@pytest.mark.parametrize("message", NOT_FATAL)
def test_errors_a_process_survives(message):
    assert not is_fatal_cuda_error(RuntimeError(message))


def test_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB."))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory" + _HINT))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert not is_out_of_memory(MemoryError("host memory"))  # host memory: not ours to split
    assert not is_out_of_memory(ValueError("CUDA out of memory"))  # not raised by torch


def test_the_cause_chain_is_searched():
    try:
        try:
            raise _ACCELERATOR("CUDA error: an illegal memory access was encountered" + _HINT)
        except RuntimeError as inner:
            raise RuntimeError("shard s-001 failed") from inner
    except RuntimeError as outer:
        assert is_fatal_cuda_error(outer)
    assert not is_fatal_cuda_error(RuntimeError("shard s-001 failed"))
