"""What an actor checks about its machine before it takes shards (no Ray: the adapter passes the facts).

* GPU honesty: an actor given a GPU runs on it or fails, naming why torch cannot use CUDA (a
  CPU-only torch build, a driver too old, no visible device); it never encodes on the CPU instead.
  Tests on clusters whose nodes declare logical GPUs set AUDIOTOK_TEST_SIMULATED_GPUS=1: such actors
  then encode on the CPU and the provenance says `simulated_gpu: true`.
* One torch thread count per run (codes at near-ties depend on it), TF32 off (fp32 means fp32).
* Storage every node can see: the output directory the driver prepared (its run marker) and the
  input's root directory or bucket prefix must be visible from the actor's node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import fsspec

from .. import writer
from ..errors import JobFailed

SIMULATED_GPUS_ENV = "AUDIOTOK_TEST_SIMULATED_GPUS"


@dataclass(frozen=True)
class Runtime:
    """Where an actor encodes, recorded in the provenance."""

    device: str  # "cuda" | "cpu"
    torch_threads: int
    torch_version: str
    cuda_version: str | None  # of the torch build
    cudnn_version: int | None
    gpu_name: str | None
    simulated_gpu: bool = False  # a logical GPU of a test cluster, encoded on the CPU


def resolve_runtime(device: str, gpu_ids: list, threads: int) -> Runtime:
    """Set up torch for an actor asked to run on `device` holding Ray GPUs `gpu_ids`."""
    import torch

    from codec.runtime import strict_fp32

    torch.set_num_threads(max(1, threads))
    strict_fp32()
    versions = dict(torch_version=torch.__version__, cuda_version=torch.version.cuda,
                    cudnn_version=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if device != "cuda":
        return Runtime("cpu", max(1, threads), gpu_name=None, **versions)
    if torch.cuda.is_available():
        return Runtime("cuda", max(1, threads), gpu_name=torch.cuda.get_device_name(0), **versions)
    if os.environ.get(SIMULATED_GPUS_ENV) == "1":
        return Runtime("cpu", max(1, threads), gpu_name=None, simulated_gpu=True, **versions)
    if torch.version.cuda is None:
        why = f"torch {torch.__version__} is a CPU-only build"
    else:
        why = (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable device: the driver may "
               f"be too old or no device visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    raise JobFailed(f"this actor holds GPU(s) {list(gpu_ids)} but cannot use CUDA: {why}. Install a CUDA "
                    "build of torch on the GPU nodes, or run with device: cpu")


def check_storage(out_dir: str, run_id: str, input_root: str | None, storage_options: dict, node: str,
                  output_options: dict | None = None) -> None:
    """Fail unless this node sees the output directory the driver prepared and the input's root.
    storage_options: the input's (`source.storage_options`); output_options: the output's."""
    if writer.read_run_marker(out_dir, output_options) != run_id:
        raise JobFailed(f"node {node[:12]} cannot see the output directory {out_dir} that the driver prepared "
                        f"(no {writer.RUN_MARKER} of this run there): write to storage every node can see, "
                        "a shared filesystem or an object store (s3://, gs://)")
    if input_root is None or input_root.startswith(("http://", "https://")):
        return
    try:
        fs, path = fsspec.core.url_to_fs(input_root, **storage_options)
        visible = fs.exists(path)
    except Exception as exc:  # credentials, missing filesystem package: the same answer, with the reason
        visible, input_root = False, f"{input_root} ({type(exc).__name__}: {exc})"
    if not visible:
        raise JobFailed(f"node {node[:12]} cannot see the input's root {input_root}: put the input on storage "
                        "every node can see")
