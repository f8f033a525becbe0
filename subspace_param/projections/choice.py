"""``method="auto"``: a projection method that is a good choice for the problem size and device.

* dense when the D × d matrix takes at most ``DENSE_AUTO_BYTES`` (64 MiB): one BLAS product,
  Li et al.'s Gaussian P, the fastest there is at that size;
* on CUDA, ``hashed``: O(D·s) gathers and atomic adds in Triton, whatever d is (``generated``
  does O(D·d) hashing per pass, which grows with d);
* on CPU, ``sparse`` up to d = ``SPARSE_AUTO_DIM`` and ``fastfood`` beyond: measured on resnet18
  (D = 11.2 M, 2 cores, benchmarks/RESULTS.md) sparse costs 1.2× a plain step at d = 100 and 3.2×
  at d = 1000, fastfood 4.3–6.7× flat in d, hashed 20× (its per-entry hashing runs as separate
  PyTorch passes on CPU) and generated minutes per step.
"""

from __future__ import annotations

import torch

DENSE_AUTO_BYTES = 64 * 2**20
SPARSE_AUTO_DIM = 1000


def choose_method(num_rows: int, dim: int, device: torch.device | str) -> str:
    """The method ``auto`` resolves to for D = ``num_rows`` covered scalars, d = ``dim`` on ``device``."""
    if num_rows * dim * 4 <= DENSE_AUTO_BYTES:
        return "dense"
    if torch.device(device).type == "cuda":
        return "hashed"
    return "sparse" if dim <= SPARSE_AUTO_DIM else "fastfood"
