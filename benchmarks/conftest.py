"""Benchmarks are pytest-benchmark tests: ``python benchmarks/run.py`` runs them and prints tables."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(int(os.environ.get("SUBSPACE_PARAM_BENCH_THREADS", "2")))
