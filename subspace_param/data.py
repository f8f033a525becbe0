"""Datasets by name: embedded real data (mnist1d, scikit-learn's digits, digits upscaled to
32×32×3 for torchvision CNNs; no download) and torchvision datasets from a local root (MNIST,
Fashion-MNIST, CIFAR-10/100; downloaded only when asked). Label noise is applied by
:func:`with_label_noise`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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


def load_digits32() -> Dataset:
    """The digits upscaled (bilinear) to 32×32 and repeated over 3 channels, for torchvision CNNs."""
    d = load_digits()

    def up(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, size=32, mode="bilinear").expand(-1, 3, -1, -1).contiguous()

    return Dataset("digits32", up(d.x_train), d.y_train, up(d.x_test), d.y_test, 10)


#: torchvision dataset class name, number of classes, per-channel mean and std
TORCHVISION = {
    "mnist": ("MNIST", 10, (0.1307,), (0.3081,)),
    "fashion-mnist": ("FashionMNIST", 10, (0.2860,), (0.3530,)),
    "cifar10": ("CIFAR10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def load_torchvision(name: str, root: str | Path = "data", download: bool = False) -> Dataset:
    """A torchvision dataset from ``root`` as normalised tensors (no augmentation). Nothing is
    downloaded unless ``download=True``; a missing dataset raises an error saying so."""
    import torchvision

    cls_name, num_classes, mean, std = TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    try:
        train, test = (cls(str(root), train=flag, download=download) for flag in (True, False))
    except RuntimeError as e:
        raise FileNotFoundError(
            f"{cls_name} not found under {root!r} ({e}); pass download=True (CLI: --download) to fetch it"
        ) from None

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32) / 255.0
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        return ((x - m) / s).contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    (xtr, ytr), (xte, yte) = tensors(train), tensors(test)
    return Dataset(name, xtr, ytr, xte, yte, num_classes)


def with_label_noise(data: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """A copy whose first ⌊fraction·N⌋ training examples, in a permutation fixed by ``seed``, get a
    label drawn uniformly from all classes (it may equal the true one: ≈ (1 − 1/C)·fraction of
    the labels change). Test labels are untouched.

    >>> d = with_label_noise(load_digits(), 0.2, seed=0)
    >>> int((d.y_train != load_digits().y_train).sum()) <= int(0.2 * len(d.y_train))
    True
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"label-noise fraction must be in [0, 1], got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    chosen = torch.randperm(n, generator=gen)[: int(fraction * n)]
    y = data.y_train.clone()
    y[chosen] = torch.randint(0, data.num_classes, (len(chosen),), generator=gen)
    return dataclasses.replace(data, name=f"{data.name}+noise{fraction:g}", y_train=y)


DATASETS = {"mnist1d": load_mnist1d, "digits": load_digits, "digits32": load_digits32}


def load_dataset(name: str, root: str | Path = "data", download: bool = False) -> Dataset:
    """An embedded dataset (``mnist1d``, ``digits``, ``digits32``) or a torchvision one from ``root``
    (``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``)."""
    if name in DATASETS:
        return DATASETS[name]()
    if name in TORCHVISION:
        return load_torchvision(name, root, download)
    raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS) + sorted(TORCHVISION)}")
