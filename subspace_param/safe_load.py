"""Reading files without running code from them: ``torch.load(weights_only=True)`` everywhere.

Every file the library and the CLI read (subspaces, projections, checkpoints, plain state_dicts,
snapshots) goes through :func:`load_file`. Failures become one-line :class:`FileReadError`s that
name the file, say what is wrong and what to do; none of them suggests loading the file unsafely.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import FileReadError, MissingFileError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    map_location: str | torch.device | None = "cpu",
    hint: str = "",
) -> Any:
    """``torch.load(path, weights_only=True)``; a missing, truncated, foreign or unsafe file raises
    :class:`FileReadError` naming ``path`` and ``what`` it should have been (``hint`` says how to
    get a good one)."""
    path = Path(path)
    todo = f"; {hint}" if hint else ""
    if not path.exists():
        raise MissingFileError(path, f"no such file (expected {what}){todo}")
    if not path.is_file():
        raise FileReadError(path, f"is not a file (expected {what})")
    if path.stat().st_size == 0:
        raise FileReadError(path, f"is empty: the {what} was never completely written{todo}")
    with open(path, "rb") as f:
        zipped = f.read(2) == b"PK"  # torch.save writes a zip archive
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = _GLOBAL.search(str(e))
        if blocked:
            raise FileReadError(
                path,
                f"refused to load: the file holds a pickled Python object ({blocked.group(1)}) that "
                f"could run code; {what} files hold only tensors and plain data, so this one was not "
                "written by subspace-param or has been tampered with",
            ) from None
        raise FileReadError(path, f"is not a PyTorch file (expected {what}){todo}") from None
    except Exception as e:  # random bytes make the unpickler raise almost anything (IndexError, …)
        if not zipped:  # neither a zip archive nor a pickle PyTorch can read
            raise FileReadError(path, f"is not a PyTorch file (expected {what}){todo}") from None
        reason = str(e).split(".")[0].strip() or type(e).__name__
        if "weights_only" in reason:  # never pass on PyTorch's advice to load unsafely
            reason = type(e).__name__
        raise FileReadError(
            path, f"is truncated or corrupt ({reason}); it is not a complete {what}{todo}"
        ) from None
