"""Exceptions raised by subspace-param. Every message names the module, tensor or argument at fault."""

from __future__ import annotations


class SubspaceError(RuntimeError):
    """A model cannot be wrapped, loaded or evaluated as asked."""


class PointError(ValueError):
    """A point does not lie in the geometry (and extrapolation was not asked for)."""


class ArchitectureMismatchError(SubspaceError):
    """Two models (or a model and a saved file) do not have the same tensors."""
