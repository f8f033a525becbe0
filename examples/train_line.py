"""Train a line of networks on a torchvision model and evaluate it along α (embedded digits data).

python examples/train_line.py [--epochs 3] [--model resnet18]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
import torchvision

import subspace_param as sp
from subspace_param.data import load_digits
from subspace_param.training import TrainConfig, metrics, predict, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--model", default="resnet18", help="any torchvision classification model name")
    a = p.parse_args()
    data = load_digits()
    up = lambda x: F.interpolate(x, size=32, mode="bilinear").expand(-1, 3, -1, -1).contiguous()  # noqa: E731
    data.x_train, data.x_test = up(data.x_train), up(data.x_test)
    train_loader, bn_loader, test_loader = data.loaders(batch_size=64)

    torch.manual_seed(0)
    model = torchvision.models.get_model(a.model, num_classes=10)
    line = sp.line(model, seed=0)  # the one call
    train(model, train_loader, TrainConfig(epochs=a.epochs, lr=0.05), subspace=line)
    for alpha in (0.0, 0.5, 1.0):
        line.update_bn(bn_loader, alpha)
        with line.at(alpha):
            logits, labels = predict(model, test_loader)
        print(f"α={alpha:.1f}  test accuracy {metrics(logits, labels)['acc']:.3f}")


if __name__ == "__main__":
    main()
