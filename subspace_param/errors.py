"""Exceptions raised by subspace-param. Every message names the module, tensor or argument at fault."""

from __future__ import annotations


class SubspaceError(RuntimeError):
    """A model cannot be wrapped, loaded or evaluated as asked."""


class PointError(ValueError):
    """A point does not lie in the geometry (and extrapolation was not asked for)."""


class ArchitectureMismatchError(SubspaceError):
    """Two models (or a model and a saved file) do not have the same tensors."""


class FileReadError(SubspaceError):
    """A file cannot be read: missing, truncated, not a PyTorch file, of another kind, or unsafe.

    The message is one line: which file, what is wrong with it, and what to do.
    """

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class MissingFileError(FileReadError, FileNotFoundError):
    """The file does not exist (also a :class:`FileNotFoundError`)."""


class NonFiniteError(SubspaceError):
    """A training loss, gradient or metric is NaN or infinite (the run diverged)."""


class RunDirectoryError(SubspaceError):
    """A run directory is in use by another run, already holds a run, or lacks what was asked for."""
