"""Environment rows, read inside a Ray actor placed as the job's actors are (num_gpus=1 on a GPU):
GPU, torch / CUDA / cuDNN versions, and the TF32 settings an actor starts with, also measured: the
relative error of an fp32 matmul and conv1d against float64 with those defaults and with TF32 off
(about 1e-3 means TF32 is in effect, about 1e-6 means true fp32)."""

from __future__ import annotations

import os

from pipeline.engine import ray_backend
from pipeline.engine.placement import ActorRequest

from .table import Check


def probe() -> dict:
    """What a fresh process sees (runs inside the actor)."""
    import platform

    import torch

    from codec.runtime import resolve_device, strict_fp32

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cuda_available": torch.cuda.is_available(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "cpus_visible": len(os.sched_getaffinity(0)), "ray": _ray_version(),
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic}
    device = resolve_device("auto")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30,
                    capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count())
    info["fp32_error_defaults"] = _fp32_errors(device)
    strict_fp32()  # as the job's actors set it
    info["fp32_error_tf32_off"] = _fp32_errors(device)
    return info


def _fp32_errors(device: str) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=g, dtype=torch.float64)
    b = torch.randn(512, 512, generator=g, dtype=torch.float64)
    x = torch.randn(4, 64, 4096, generator=g, dtype=torch.float64)
    w = torch.randn(64, 64, 7, generator=g, dtype=torch.float64)

    def rel(exact, approx):
        return float((exact - approx.double().cpu()).norm() / exact.norm())

    return {"matmul": rel(a @ b, a.float().to(device) @ b.float().to(device)),
            "conv1d": rel(torch.nn.functional.conv1d(x, w),
                          torch.nn.functional.conv1d(x.float().to(device), w.float().to(device)))}


def _ray_version() -> str:
    from importlib.metadata import version

    return version("ray")


class Probe:
    """A placed actor's work (engine.ray_backend): what a fresh actor process sees."""

    actor_name = "GpuCheckProbe"

    def __init__(self, context):
        pass

    def describe(self) -> dict:
        return probe()

    def run(self, batch: list) -> list:
        return []


def ensure_ray() -> None:
    """A local Ray unless RAY_ADDRESS names a cluster (pipeline.engine.ray_connect); never a stranger's."""
    ray_backend.connect_ray(log_to_driver=False)


def env_rows(gpu: bool) -> list[Check]:
    ensure_ray()
    gpus = sum(n.gpus for n in ray_backend.alive_nodes())
    if gpu and gpus < 1:  # an actor asking for a GPU would wait for one forever: say so now
        return [Check("env", "GPU seen by Ray", "fail", f"{gpus:g} GPUs",
                      "Ray started without a GPU resource (CUDA_VISIBLE_DEVICES? a RAY_ADDRESS cluster without GPUs?)")]
    request = ActorRequest(num_cpus=0.0, num_gpus=1.0 if gpu else 0.0)
    _, info = ray_backend.run_on_actors(Probe, (), [[]], request, 1, placement_timeout_s=30, what="GPU-check probe",
                                        results_timeout_s=30)
    cuda_ok = info["cuda_available"] or not gpu
    where = f"Ray actor num_gpus={1 if gpu else 0}, CUDA_VISIBLE_DEVICES={info['cuda_visible_devices']}"
    gpu_text = (f"{info.get('gpu')} ({info.get('gpu_memory_gib', 0):.0f} GiB, sm {info.get('capability')})"
                if info["cuda_available"] else "none")
    d, off = info["fp32_error_defaults"], info["fp32_error_tf32_off"]
    return [
        Check("env", "GPU seen by the actor", "ok" if cuda_ok else "fail", gpu_text, where, info),
        Check("env", "versions", "ok", f"torch {info['torch']}",
              f"CUDA {info['cuda']}, cuDNN {info['cudnn']}, Python {info['python']}, Ray {info['ray']}"),
        Check("env", "TF32 defaults in an actor", "ok",
              f"matmul {info['matmul_allow_tf32']}, cudnn {info['cudnn_allow_tf32']}",
              f"float32_matmul_precision={info['float32_matmul_precision']}, cudnn.benchmark="
              f"{info['cudnn_benchmark']}, deterministic={info['cudnn_deterministic']}"),
        Check("env", "fp32 error vs float64", "ok" if max(off.values()) < 1e-4 else "fail",
              f"off: {off['matmul']:.1e} / {off['conv1d']:.1e}",
              f"matmul / conv1d relative error; with the defaults {d['matmul']:.1e} / {d['conv1d']:.1e} "
              "(~1e-3: TF32 in effect); the job's actors turn TF32 off", {"defaults": d, "tf32_off": off}),
    ]
