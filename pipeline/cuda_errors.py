"""Which CUDA errors a process can survive: out of memory (retry smaller), or a poisoned context.

After a *sticky* CUDA error the context is unusable: "any further CUDA work will return the same
error. To continue using CUDA, the process must be terminated and relaunched" (CUDA runtime API,
`cudaError` in driver_types.h: illegal address, launch failure, launch timeout, device-side
assert, hardware stack error, illegal instruction, misaligned address, invalid address space,
invalid PC, contained error, tensor memory leak, external device, MPS client terminated). An
uncorrectable ECC or NVLink error, a lost GPU ("unknown error") and cuBLAS / cuDNN execution
failures (a kernel of theirs hit one of the above) are treated alike. Such an error says nothing
about the shard: the actor exits (`shard_actor.py`), the driver replaces it and retries
the shard (within `max_shard_attempts`).

PyTorch reports them as `torch.AcceleratorError` (a RuntimeError; before torch 2.8 a plain
RuntimeError) whose message starts `CUDA error: <cudaGetErrorString text>`, newer versions adding
"Search for `cudaErrorXxx' ..."; cuBLAS as `CUDA error: CUBLAS_STATUS_... when calling ...`,
cuDNN as `cuDNN error: CUDNN_STATUS_...`. Matching is on those texts, over the exception's
cause/context chain too.
"""

from __future__ import annotations

import re

# cudaGetErrorString texts (CUDA 13 runtime) and enum names of the errors that poison a context
_STICKY = (
    "an illegal memory access was encountered", "cudaErrorIllegalAddress",
    "unspecified launch failure", "cudaErrorLaunchFailure",
    "the launch timed out and was terminated", "cudaErrorLaunchTimeout",
    "device-side assert triggered", "cudaErrorAssert",
    "hardware stack error", "cudaErrorHardwareStackError",
    "an illegal instruction was encountered", "cudaErrorIllegalInstruction",
    "misaligned address", "cudaErrorMisalignedAddress",
    "operation not supported on global/shared address space", "cudaErrorInvalidAddressSpace",
    "invalid program counter", "cudaErrorInvalidPc",
    "Invalid access of peer GPU memory over nvlink or a hardware error", "cudaErrorContained",
    "tensor memory not completely freed", "cudaErrorTensorMemoryLeak",
    "cudaErrorExternalDevice",
    "the MPS client has been terminated by the server", "cudaErrorMpsClientTerminated",
    "uncorrectable ECC error encountered", "cudaErrorECCUncorrectable",
    "uncorrectable NVLink error detected during the execution", "cudaErrorNvlinkUncorrectable",
    "unknown error", "cudaErrorUnknown",
)
_LIBRARY = ("CUBLAS_STATUS_EXECUTION_FAILED", "CUBLAS_STATUS_INTERNAL_ERROR", "CUBLAS_STATUS_MAPPING_ERROR",
            "CUDNN_STATUS_EXECUTION_FAILED", "CUDNN_STATUS_INTERNAL_ERROR", "CUDNN_STATUS_MAPPING_ERROR")
_FATAL = re.compile(r"(?:CUDA error|CUDA driver error|HIP error): (?:" + "|".join(map(re.escape, _STICKY)) + r")\b"
                    + r"|`(?:" + "|".join(n for n in _STICKY if n.startswith("cudaError")) + r")'"
                    + r"|\b(?:" + "|".join(_LIBRARY) + r")\b")
_OOM = re.compile(r"CUDA out of memory|CUDA error: out of memory|cudaErrorMemoryAllocation"
                  r"|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED")


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_fatal_cuda_error(exc: BaseException) -> bool:
    """True when `exc` (or an exception it was raised from) reports an error after which this
    process can no longer use CUDA; False for everything else, out of memory included."""
    return any(_FATAL.search(str(e)) for e in _chain(exc))


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (torch.cuda.OutOfMemoryError, or a RuntimeError saying
    so, cuBLAS/cuDNN allocation failures included): the work may succeed in smaller pieces."""
    import torch

    return any(isinstance(e, torch.cuda.OutOfMemoryError)
               or (isinstance(e, RuntimeError) and _OOM.search(str(e)) is not None) for e in _chain(exc))
