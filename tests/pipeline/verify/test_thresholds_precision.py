"""Verify's code agreement threshold follows the precision the provenance records."""

import dataclasses

import pytest

from codec import random_model
from pipeline.config import JobConfig
from pipeline.provenance import build_provenance
from pipeline.verify.thresholds import CROSS_DEVICE_MIN_CODE_AGREEMENT, thresholds_from


@pytest.fixture(scope="module")
def fp32_cuda():
    prov = build_provenance(random_model("random:24khz"), JobConfig(), "cuda")
    return dataclasses.replace(prov, job_config={"verify": {"min_code_agreement": 0.999, "min_si_snr_db": 1.0}})


def test_fp32_keeps_its_threshold_on_any_device(fp32_cuda):
    assert fp32_cuda.precision == "fp32"
    for device in (None, "cuda", "cpu"):
        assert thresholds_from(fp32_cuda, device).min_code_agreement == 0.999


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_lowers_only_the_code_threshold_across_device_types(fp32_cuda, precision):
    prov = dataclasses.replace(fp32_cuda, precision=precision)
    assert thresholds_from(prov, "cuda:0").min_code_agreement == 0.999  # same kernels: exact re-encode expected
    across = thresholds_from(prov, "cpu")
    assert across.min_code_agreement == CROSS_DEVICE_MIN_CODE_AGREEMENT[precision] < 0.999
    assert across.min_si_snr_db == 1.0


def test_an_explicitly_lower_or_absent_threshold_is_kept(fp32_cuda):
    low = dataclasses.replace(fp32_cuda, precision="bf16", job_config={"verify": {"min_code_agreement": 0.1}})
    assert thresholds_from(low, "cpu").min_code_agreement == 0.1
    off = dataclasses.replace(fp32_cuda, precision="bf16", job_config={"verify": {"min_code_agreement": None}})
    assert thresholds_from(off, "cpu").min_code_agreement is None
