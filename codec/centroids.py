"""k-means centroid files: the `.safetensors` that `jobs.fit_kmeans` writes (with provenance) and plain `.npy`.

    .safetensors   tensor "centroids" float32 [k, dim]; string metadata (`CentroidMeta`): format, model,
                   model_sha256, layer, k, dim, seed, sample (what the sample was), sample_sha256 (of the
                   sampled keys and lengths), iterations, batch_size
    .npy           a float array [k, dim], read with np.load(allow_pickle=False): never a pickle

`Centroids.sha256` is the file's sha256: the identity a token dataset records for its codebook.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FORMAT = "audiotok-kmeans-1"


@dataclass(frozen=True)
class CentroidMeta:
    """Provenance of fitted centroids (all written as strings in the safetensors header)."""

    model: str  # the model source as given (random:hubert_base:seed=0, a directory, a hub id)
    model_sha256: str
    layer: int
    k: int
    dim: int
    seed: int
    sample: str  # what was sampled, in words: the input, how many items and seconds, the feature frames used
    sample_sha256: str  # sha256 of the sampled items' keys and lengths
    iterations: int
    batch_size: int
    format: str = FORMAT

    def to_strings(self) -> dict[str, str]:
        return {k: str(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_strings(cls, data: dict[str, str]) -> CentroidMeta:
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        missing = sorted(set(fields) - set(data))
        if missing:
            raise ValueError(f"centroid metadata lacks {missing}")
        return cls(**{k: int(data[k]) if fields[k] in ("int", int) else data[k] for k in fields})


@dataclass(frozen=True)
class Centroids:
    vectors: torch.Tensor  # float32 [k, dim], CPU
    sha256: str  # of the file
    path: str
    meta: CentroidMeta | None  # None for a plain .npy

    @property
    def k(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]


def save_centroids(path: str | os.PathLike, vectors: torch.Tensor, meta: CentroidMeta) -> Path:
    """Write `vectors` [k, dim] (as float32) and `meta` to a .safetensors file (atomically: a temporary
    file renamed into place)."""
    out = Path(path)
    if out.suffix != ".safetensors":
        raise ValueError(f"centroids are written as .safetensors; got {out}")
    vectors = vectors.detach().float().cpu().contiguous()
    if vectors.shape != (meta.k, meta.dim):
        raise ValueError(f"centroids of shape {tuple(vectors.shape)} do not match k={meta.k}, dim={meta.dim}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(safetensors_bytes(vectors, meta.to_strings()))
    os.replace(tmp, out)
    return out


def safetensors_bytes(vectors: torch.Tensor, metadata: dict[str, str]) -> bytes:
    """A safetensors file holding one float32 tensor "centroids", its header's JSON keys sorted: the same
    centroids and metadata give the same bytes (safetensors' own writer orders the metadata at random)."""
    data = vectors.numpy().astype("<f4").tobytes()
    header = {"__metadata__": dict(sorted(metadata.items())),
              "centroids": {"dtype": "F32", "shape": list(vectors.shape), "data_offsets": [0, len(data)]}}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def load_centroids(path: str | os.PathLike) -> Centroids:
    """A .safetensors written by `save_centroids` or a plain .npy [k, dim] float array; ValueError saying
    what is wrong (missing file, other suffix, a pickled or non-float or non-2-D array, NaN/inf, k < 1)."""
    from safetensors import safe_open

    from .loading import sha256_file

    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"centroids file {str(path)!r} not found (expected a .safetensors from jobs.fit_kmeans "
                         f"or a .npy [k, dim] float array)")
    meta = None
    if p.suffix == ".safetensors":
        with safe_open(str(p), framework="pt") as f:
            if "centroids" not in f.keys():
                raise ValueError(f"{p} has no 'centroids' tensor (tensors: {sorted(f.keys())})")
            vectors = f.get_tensor("centroids")
            header = f.metadata() or {}
        if header.get("format") == FORMAT:
            meta = CentroidMeta.from_strings(header)
    elif p.suffix == ".npy":
        try:
            array = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{p} is not a plain numeric .npy array (pickles are refused): {exc}") from exc
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{p} holds {array.dtype} values; centroids must be floats")
        vectors = torch.from_numpy(np.ascontiguousarray(array))
    else:
        raise ValueError(f"centroids file {p} must end in .safetensors or .npy")
    if vectors.dim() != 2 or vectors.shape[0] < 1 or vectors.shape[1] < 1:
        raise ValueError(f"{p}: centroids must be a [k, dim] array with k, dim >= 1; got shape {tuple(vectors.shape)}")
    vectors = vectors.float().contiguous()
    if not torch.isfinite(vectors).all():
        raise ValueError(f"{p}: centroids contain NaN or infinite values")
    return Centroids(vectors, sha256_file(p), str(p), meta)
