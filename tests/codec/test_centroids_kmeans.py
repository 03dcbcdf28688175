"""k-means (codec/kmeans.py) and centroid files (codec/centroids.py): reproducible from the seed, finds
separated clusters, reads plain .npy arrays and never a pickle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec.centroids import CentroidMeta, load_centroids, save_centroids
from codec.kmeans import kmeans_plus_plus, minibatch_kmeans


def blobs(seed: int = 0, centers: int = 12, dim: int = 8, rows: int = 6000):
    gen = torch.Generator().manual_seed(seed)
    truth = torch.randn(centers, dim, generator=gen) * 6
    return truth, truth[torch.randint(centers, (rows,), generator=gen)] + torch.randn(rows, dim, generator=gen)


def fit(x, k, seed):
    return minibatch_kmeans(lambda index: x[index], len(x), k, seed=seed, batch_size=500, steps=30)


def test_same_seed_same_bytes_other_seed_other_centers():
    _, x = blobs()
    a, b, c = fit(x, 12, seed=3), fit(x, 12, seed=3), fit(x, 12, seed=4)
    assert a.centers.numpy().tobytes() == b.centers.numpy().tobytes()
    assert not torch.equal(a.centers, c.centers)


def test_recovers_separated_clusters():
    truth, x = blobs()
    result = fit(x, 12, seed=0)
    # every true center has a fitted one within 0.5 (unit noise per dimension): nothing merged or split
    assert torch.cdist(truth, result.centers).min(1).values.max() < 0.5
    assert result.inertia[-1] < 1.2 * x.shape[1] and int(result.counts.sum()) == 30 * 500


def test_kmeans_plus_plus_picks_distinct_rows_and_needs_k_rows():
    _, x = blobs(rows=200)
    centers = kmeans_plus_plus(x, 12, torch.Generator().manual_seed(0))
    assert len({tuple(c.tolist()) for c in centers}) == 12
    with pytest.raises(ValueError, match="at least k=300 rows"):
        kmeans_plus_plus(x, 300, torch.Generator())
    with pytest.raises(ValueError, match="k <= the number of feature rows"):
        fit(x, 201, seed=0)


META = CentroidMeta(model="random:hubert_base:seed=0", model_sha256="ab" * 32, layer=9, k=4, dim=3, seed=1,
                    sample="x: 2 items", sample_sha256="cd" * 32, iterations=5, batch_size=10)


def test_safetensors_round_trip_keeps_provenance(tmp_path):
    vectors = torch.randn(4, 3)
    path = save_centroids(tmp_path / "c.safetensors", vectors, META)
    loaded = load_centroids(path)
    assert torch.equal(loaded.vectors, vectors) and loaded.meta == META and len(loaded.sha256) == 64
    with pytest.raises(ValueError, match="do not match k=4, dim=3"):
        save_centroids(tmp_path / "d.safetensors", torch.randn(5, 3), META)


def test_npy_arrays_load_and_bad_ones_are_refused(tmp_path):
    np.save(tmp_path / "ok.npy", np.ones((5, 3), dtype=np.float64))
    loaded = load_centroids(tmp_path / "ok.npy")
    assert loaded.vectors.dtype == torch.float32 and loaded.k == 5 and loaded.dim == 3 and loaded.meta is None
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickles are refused"):
        load_centroids(tmp_path / "pickled.npy")
    np.save(tmp_path / "ints.npy", np.ones((5, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="must be floats"):
        load_centroids(tmp_path / "ints.npy")
    np.save(tmp_path / "flat.npy", np.ones(5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[k, dim\] array"):
        load_centroids(tmp_path / "flat.npy")
    np.save(tmp_path / "nan.npy", np.full((2, 2), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        load_centroids(tmp_path / "nan.npy")
    (tmp_path / "c.pkl").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"must end in .safetensors or .npy"):
        load_centroids(tmp_path / "c.pkl")
    with pytest.raises(ValueError, match="not found"):
        load_centroids(tmp_path / "none.npy")
