"""Saving and loading subspaces: one file with the spec, the tensor shapes and the state_dict.

Files are written atomically (temporary file in the same folder, then ``os.replace``) and read
with ``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ArchitectureMismatchError, FileReadError
from .geometry import geometry_from_spec
from .io import atomic_write
from .names import LEGACY_COEFFICIENTS_KEY
from .projections import ProjectedSubspace, get_projection, is_projected, projection
from .safe_load import load_file
from .subspace import Subspace, get_subspace, is_wrapped, wrap
from .vertex_init import Copy

FORMAT = "subspace-param"


def save(subspace: Subspace | ProjectedSubspace, path: str | os.PathLike[str]) -> Path:
    """Write ``subspace`` to ``path``: for a geometric subspace the geometry, covered tensors,
    vertices, point and buffers; for a projection θ0, ω, the scales and the seed (never P)."""
    if isinstance(subspace, ProjectedSubspace):
        shapes = {
            n: list(getattr(r.module, r.local_name).shape)
            for n, r in zip(subspace.tensor_names, subspace.refs)
        }
    elif isinstance(subspace, Subspace):
        shapes = {n: list(row[0].shape) for n, row in zip(subspace.tensor_names, subspace.vertices())}
    else:
        raise TypeError(f"save() takes a Subspace or ProjectedSubspace handle, got {type(subspace).__name__}")
    payload = {
        "format": FORMAT,
        "spec": subspace.spec,
        "shapes": shapes,
        "model_class": type(subspace.model).__name__,
        "state_dict": {k: v.detach().cpu() for k, v in subspace.model.state_dict().items()},
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    payload = load_file(path, "subspace-param file", hint="write one with sp.save(handle, path)")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        looks_like = (
            "a plain state_dict: load it with model.load_state_dict(torch.load(path, weights_only=True))"
            if isinstance(payload, dict)
            and payload
            and all(isinstance(v, torch.Tensor) for v in payload.values())
            else f"a {type(payload).__name__}"
        )
        raise FileReadError(
            path, f"is not a subspace-param file (no '{FORMAT}' header; it holds {looks_like})"
        )
    return payload


def _check_shapes(path: str | os.PathLike[str], payload: dict[str, Any], model: nn.Module) -> None:
    params = dict(model.named_parameters())
    for name, shape in payload["shapes"].items():
        if name not in params:
            raise ArchitectureMismatchError(
                f"{path} was saved from a {payload.get('model_class')} with tensor {name!r}, "
                f"which {type(model).__name__} does not have"
            )
        if list(params[name].shape) != list(shape):
            raise ArchitectureMismatchError(
                f"tensor {name!r} has shape {tuple(shape)} in {path} but "
                f"{tuple(params[name].shape)} in {type(model).__name__}"
            )


def _load_projection(
    path: str | os.PathLike[str], payload: dict[str, Any], model: nn.Module
) -> ProjectedSubspace:
    spec = payload["spec"]
    if is_projected(model):
        sub = get_projection(model)
        if sub.spec != spec:
            raise ArchitectureMismatchError(
                f"{path} holds a different projection than the one {type(model).__name__} has"
            )
        return sub
    _check_shapes(path, payload, model)
    state = payload["state_dict"]
    params = dict(model.named_parameters())
    with torch.no_grad():  # θ0 first: the orthonormal projector is built from it
        for name in spec["tensors"]:
            module_name, _, local = name.rpartition(".")
            key = (
                f"{module_name}.parametrizations.{local}.original"
                if module_name
                else f"parametrizations.{local}.original"
            )
            params[name].copy_(state[key])
    return projection(
        model,
        spec["dim"],
        method=spec["method"],
        seed=spec["seed"],
        per_tensor_scale=spec["per_tensor_scale"],
        tensor_names=spec["tensors"],
        **spec["options"],
    )


def load(
    path: str | os.PathLike[str], model: nn.Module, *, strict: bool = True
) -> Subspace | ProjectedSubspace:
    """Load a file written by :func:`save` into ``model`` and return its handle.

    ``model`` is a freshly built model of the same architecture, unwrapped (it is wrapped here,
    with the saved geometry or projection and tensors) or already wrapped the same way.
    """
    payload = _read(path)
    spec = payload["spec"]
    if spec.get("kind") == "projection":
        sub_p = _load_projection(path, payload, model)
        model.load_state_dict(payload["state_dict"], strict=strict)
        return sub_p
    if is_wrapped(model):
        sub = get_subspace(model)
        if sub.spec["geometry"] != spec["geometry"] or sub.tensor_names != spec["tensors"]:
            raise ArchitectureMismatchError(
                f"{path} holds a {geometry_from_spec(spec['geometry']).describe()} "
                f"over {len(spec['tensors'])} "
                f"tensors; the model is wrapped as a {sub.geometry.describe()} over {len(sub.tensor_names)}"
            )
    else:
        _check_shapes(path, payload, model)
        sub = wrap(
            model,
            geometry_from_spec(spec["geometry"]),
            init=Copy(),
            layerwise=spec["layerwise"],
            backend=spec.get("backend"),
            frozen_vertices=spec.get("frozen_vertices", ()),
            tensor_names=spec["tensors"],
            fused=spec.get("fused", True),
        )
    state = {k: v for k, v in payload["state_dict"].items() if k != LEGACY_COEFFICIENTS_KEY}
    result = model.load_state_dict(state, strict=strict)
    if strict and (result.missing_keys or result.unexpected_keys):  # pragma: no cover - strict raises first
        raise ArchitectureMismatchError(str(result))
    return sub
