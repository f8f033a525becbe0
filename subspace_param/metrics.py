"""Classification metrics on logits: accuracy, NLL, expected calibration error (vectorised)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 20) -> float:
    """ECE = (1/N) Σ_b |Σ_{i∈b} correct_i − Σ_{i∈b} conf_i| over ``bins`` equal-width bins of the
    max softmax probability (bin b holds conf ∈ (b/B, (b+1)/B]; conf = 0 falls in bin 0).

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.2]])
    >>> round(expected_calibration_error(logits, torch.tensor([0, 0, 1])), 4)
    0.3466
    """
    if bins < 1:
        raise ValueError(f"bins must be ≥ 1, got {bins}")
    probs = logits.detach().double().softmax(-1)
    conf, pred = probs.max(-1)
    correct = (pred == labels).double()
    index = (torch.ceil(conf * bins).long() - 1).clamp(0, bins - 1)
    gap = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct - conf)
    return float(gap.abs().sum() / len(labels))


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, bins: int = 20) -> dict[str, float]:
    """``acc``, ``nll`` and ``ece`` (20 bins) of logits (for an ensemble: the summed logits)."""
    return {
        "acc": float((logits.argmax(1) == labels).double().mean()),
        "nll": float(F.cross_entropy(logits.double(), labels)),
        "ece": expected_calibration_error(logits, labels, bins),
    }
