"""Provenance fields that decide whether two results are comparable (``schema.MACHINE_FIELDS``)."""

from __future__ import annotations

import subprocess
import sys

import torchvision


def test_torchvision_version_is_the_packages_own_without_importing_it():
    # A fresh interpreter, as an A/B worker is: collecting provenance must not import
    # torchvision (it pulls in torch._dynamo, seconds per worker), yet record exactly the
    # string torchvision reports itself, local tag included (0.29.1+cu130, not 0.29.1): a
    # different spelling would make every older record incomparable with newer ones.
    code = ("import sys; from harness.probes.provenance import collect; "
            "v = collect('cpu')['torchvision_version']; "
            "assert 'torchvision' not in sys.modules, 'torchvision was imported'; print(v)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == torchvision.__version__
