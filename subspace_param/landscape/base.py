"""What every kind of landscape direction shares: a direction is a parameter dict (name → tensor
of the parameter's shape) over a model's floating-point parameters; :class:`Directions` carries k
of them with the numbers that ranked them (eigenvalues, explained variance)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import SubspaceError
from ..safe_load import load_file

State = dict[str, torch.Tensor]


@dataclasses.dataclass
class Directions:
    """k directions (parameter dicts) of one kind, with ``values`` (one per direction: Hessian
    eigenvalues, or PCA explained-variance ratios) and ``info`` (how they were computed)."""

    directions: list[State]
    values: np.ndarray
    kind: str
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.directions)

    def __getitem__(self, i: int) -> State:
        return self.directions[i]

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": [float(x) for x in self.values], **self.info}


def check_plain_model(model: nn.Module, what: str) -> None:
    """Refuse a model whose tensors are parametrized (a subspace or projection): its
    ``named_parameters`` are the vertices/originals, not the weights the landscape is about."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what}: expected an nn.Module, got {type(model).__name__}")
    wrapped = [n for n, m in model.named_modules() if parametrize.is_parametrized(m)]
    if wrapped:
        raise SubspaceError(
            f"{what}: {type(model).__name__} has parametrized modules ({', '.join(wrapped[:3]) or 'root'}…); "
            "landscapes are drawn on plain models: export a point first (sub.export(point))"
        )


def parameter_state(model: nn.Module | State) -> State:
    """The floating-point parameters of a model (detached), or a parameter dict as given."""
    if isinstance(model, nn.Module):
        check_plain_model(model, "parameter_state")
        return {n: p.detach() for n, p in model.named_parameters() if p.is_floating_point()}
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise TypeError(f"expected an nn.Module or a dict of tensors, got {type(model).__name__}")
    return dict(model)


def load_state(item: nn.Module | State | str | Path, names: Sequence[str] | None = None) -> State:
    """A parameter dict from a model, a dict, or a ``state_dict`` file (read with ``weights_only=True``),
    restricted to ``names`` when given (a missing name is an error that names the file)."""
    if isinstance(item, (str, Path)):
        state = load_file(Path(item), "state_dict", map_location="cpu")
        if not isinstance(state, dict):
            raise SubspaceError(f"{item}: expected a state_dict, found {type(state).__name__}")
        where = str(item)
    else:
        state = parameter_state(item)
        where = type(item).__name__
    if names is None:
        return {n: t for n, t in state.items() if isinstance(t, torch.Tensor) and t.is_floating_point()}
    missing = [n for n in names if n not in state]
    if missing:
        raise SubspaceError(f"{where}: no tensors {missing[:5]} (not a checkpoint of this model)")
    return {n: state[n] for n in names}


def flatten(state: State, names: Sequence[str]) -> torch.Tensor:
    """The tensors of ``names`` concatenated into one float64 CPU vector."""
    return torch.cat([state[n].detach().reshape(-1).double().cpu() for n in names])


def unflatten(vector: torch.Tensor, like: State) -> State:
    """Split a flat vector back into tensors shaped and typed like ``like`` (in its order)."""
    out, offset = {}, 0
    for n, t in like.items():
        out[n] = vector[offset : offset + t.numel()].view(t.shape).to(t.dtype)
        offset += t.numel()
    if offset != vector.numel():
        raise ValueError(f"vector has {vector.numel():,} entries, the tensors {offset:,}")
    return out
