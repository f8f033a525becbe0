"""Embedded real datasets (no download): mnist1d and scikit-learn's digits."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


@dataclasses.dataclass
class Dataset:
    """Train/test tensors of one dataset. ``x`` is float32 with a channel dim, ``y`` int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def loaders(
        self, batch_size: int = 128, seed: int = 0, eval_batch_size: int = 1000
    ) -> tuple[DataLoader, DataLoader, DataLoader]:
        """(shuffled train, ordered train for BN/eval, ordered test) loaders."""
        g = torch.Generator().manual_seed(seed)
        train = TensorDataset(self.x_train, self.y_train)
        test = TensorDataset(self.x_test, self.y_test)
        return (
            DataLoader(train, batch_size=batch_size, shuffle=True, generator=g, drop_last=True),
            DataLoader(train, batch_size=eval_batch_size, shuffle=False),
            DataLoader(test, batch_size=eval_batch_size, shuffle=False),
        )


def load_mnist1d(seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated offline: the standard 4000/1000 split, length-40
    signals, 10 classes. Shape ``(N, 1, 40)``."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # pragma: no cover - dependency declared in the [data] extra
        raise ImportError("mnist1d is not installed: pip install 'subspace-param[data]'") from e
    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)
    return Dataset(
        "mnist1d",
        torch.as_tensor(d["x"], dtype=torch.float32).unsqueeze(1),
        torch.as_tensor(d["y"], dtype=torch.int64),
        torch.as_tensor(d["x_test"], dtype=torch.float32).unsqueeze(1),
        torch.as_tensor(d["y_test"], dtype=torch.int64),
        10,
    )


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 8×8 digits (1797 images, 10 classes), scaled to [0, 1], a stratified
    split fixed by ``seed``. Shape ``(N, 1, 8, 8)``."""
    try:
        from sklearn.datasets import load_digits as _load
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover
        raise ImportError("scikit-learn is not installed: pip install 'subspace-param[data]'") from e
    bunch = _load()
    x = (bunch.images / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(
        x, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    return Dataset(
        "digits",
        torch.from_numpy(xtr).unsqueeze(1),
        torch.as_tensor(ytr, dtype=torch.int64),
        torch.from_numpy(xte).unsqueeze(1),
        torch.as_tensor(yte, dtype=torch.int64),
        10,
    )


DATASETS = {"mnist1d": load_mnist1d, "digits": load_digits}


def load_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; embedded datasets: {sorted(DATASETS)}")
    return DATASETS[name]()
