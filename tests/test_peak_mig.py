"""A MIG slice is not the whole GPU (issue 29, review item 11): ``\\bH100\\b`` matched
"NVIDIA H100 80GB HBM3 MIG 1g.10gb" and gave the slice the whole H100's peak, an MFU about 7x
too low."""

from __future__ import annotations

import pytest

from harness.probes.peak_table import lookup_gpu


def test_a_whole_gpu_keeps_its_datasheet_peak():
    assert lookup_gpu("NVIDIA H100 80GB HBM3").tflops["bf16"] == 989.5


@pytest.mark.parametrize("name,slices", [("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 1),
                                         ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", 3),
                                         ("NVIDIA A100-SXM4-40GB MIG 7g.40gb", 7)])
def test_a_mig_slice_gets_its_share(name, slices):
    whole = lookup_gpu(name.split(" MIG")[0])
    entry = lookup_gpu(name)
    assert entry is not None and "MIG" in entry.name
    assert entry.tflops["bf16"] == pytest.approx(whole.tflops["bf16"] * slices / 7)


def test_a_mig_name_without_a_profile_has_no_peak():
    assert lookup_gpu("NVIDIA H100 80GB HBM3 MIG") is None
