"""Bit-for-bit regression against reference tensors written by the code of commit a9c7a3d.

The cases (small trainings of RBM, fit/TrainingConfig, CFRBM) are defined in
``tests/data/make_reference.py``, which also wrote ``tests/data/reference_main.safetensors``
from the old code; here they run with the current code and every tensor must be
``torch.equal`` to the stored one (same dtype, shape and bits).  See that script's docstring
for what each key is and how to regenerate the file.

Bits are only reproducible on the kind of CPU that wrote the file (an AMD EPYC): another
CPU's matrix-product kernels round differently (an earlier file, written on an Intel Xeon,
was missed by up to 4·10⁻⁶ on the EPYC by the code that wrote it).  Where the bits differ,
every entry must still agree within :data:`CROSS_CPU_TOLERANCE`, about 25 times that rounding
and far below what any change of the algorithm moves (one update with lr 0.05 moves
parameters by ≈ 10⁻³).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"
#: |have − want| allowed where the bits differ (another CPU's rounding; see the module docstring)
CROSS_CPU_TOLERANCE = 1e-4
_spec = importlib.util.spec_from_file_location("boltzkit_make_reference", DATA / "make_reference.py")
make_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_reference)


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(make_reference.REFERENCE_FILE), framework="pt") as f:
        metadata = json.loads((f.metadata() or {}).get("reference", "{}"))
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return tensors, metadata


def test_reference_covers_exactly_the_cases(reference):
    tensors, metadata = reference
    assert metadata.get("commit") == make_reference.REFERENCE_COMMIT
    assert {key.split(".", 1)[0] for key in tensors} == set(make_reference.CASES)


@pytest.mark.parametrize("case", list(make_reference.CASES))
def test_bit_for_bit(case, reference):
    tensors, metadata = reference
    expected = {k: v for k, v in tensors.items() if k.startswith(case + ".")}
    got = make_reference.run_case(case)
    assert sorted(got) == sorted(expected), f"{case}: keys changed"
    where = (f"(reference written by commit {metadata.get('commit', '?')[:7]} with torch "
             f"{metadata.get('torch', '?')}; this is torch {torch.__version__})")
    problems = []
    for key, want in expected.items():
        have = got[key]
        if have.dtype != want.dtype or have.shape != want.shape:
            problems.append(f"{key}: {have.dtype} {tuple(have.shape)} != reference "
                            f"{want.dtype} {tuple(want.shape)}")
        elif not torch.equal(have, want):
            diff = (have.double() - want.double()).abs()
            if float(diff.max()) > CROSS_CPU_TOLERANCE:
                problems.append(f"{key} differs in {int((diff > 0).sum())} of {diff.numel()} entries "
                                f"(max |Δ| = {float(diff.max()):.3g}, more than rounding)")
    if problems:
        pytest.fail("; ".join(problems) + f" {where}")
