"""pytest-benchmark setup for trainmark: machine info from the harness's provenance, options.

``pytest_benchmark_update_machine_info`` adds the device, driver, torch/CUDA/cuDNN versions,
CPU model and thread count to every saved benchmark file, so ``--benchmark-compare`` warns when
two runs come from different hardware, and ``trainmark compare`` (which reads these files) refuses
to compare them without ``--allow-different-machines``.
"""

from __future__ import annotations

import pytest

from harness.schema import MACHINE_FIELDS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trainmark")
    group.addoption("--bench-models", default=None,
                    help="comma list of models for test_training.py (default: all registered "
                         "models except resnet18; 'all' for every one)")
    group.addoption("--bench-rounds", type=int, default=2,
                    help="timed pedantic rounds per benchmark, each a full harness run "
                         "(default 2, after 1 warm-up round)")


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from harness.core.devices import best_device
    from harness.probes import provenance

    prov = provenance.collect(best_device())
    for key in (*MACHINE_FIELDS, "trainmark_version", "omp_num_threads_env"):
        machine_info[key] = prov.get(key)
