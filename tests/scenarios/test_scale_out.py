"""Shards spread over the nodes of a multi-node local Ray cluster, with the rows of a one-node run."""

import io
import os
import tarfile

import pyarrow.dataset as pads
import pytest

from pipeline.config import load_config
from tests.conftest import REPO, corpus_file

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402


def _shards(root):
    root.mkdir()
    data = [corpus_file(f"speech/{n}").read_bytes() for n in ("cards_005_16k.wav", "goforward_16k.wav")]
    for s in range(6):
        with tarfile.open(root / f"s-{s:02d}.tar", "w") as tf:
            for i in range(2):
                info = tarfile.TarInfo(f"k{s}-{i}.wav")
                info.size = len(data[i])
                tf.addfile(info, io.BytesIO(data[i]))
    return str(root / "s-{00..05}.tar")


def _rows(out):
    table = pads.dataset(out / "tokens").to_table(columns=["key", "codes"])
    return sorted((r["key"], str(r["codes"])) for r in table.to_pylist())


def test_three_nodes_same_rows_as_one(tmp_path):
    from pipeline.job import run_job
    from pipeline.writer import committed_shards

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    spec = _shards(tmp_path / "in")
    cfg = load_config(REPO / "configs" / "test.yaml", ["num_actors=3", "cpus_per_actor=1"])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        run_job(cfg, spec, str(tmp_path / "multi"), log=lambda m: None)
    finally:
        ray.shutdown()
        cluster.shutdown()
    nodes = {r.node_id for r in committed_shards(str(tmp_path / "multi")).values()}
    assert len(nodes) == 3, f"shards ran on {len(nodes)} node(s)"

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        run_job(load_config(REPO / "configs" / "test.yaml"), spec, str(tmp_path / "single"), log=lambda m: None)
    finally:
        ray.shutdown()
    assert _rows(tmp_path / "multi") == _rows(tmp_path / "single")
    assert len(_rows(tmp_path / "single")) == 12
