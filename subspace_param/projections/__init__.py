"""Random-projection subspaces θ = θ0 + P ω (Li et al. 2018; Greydanus's ω-space; SAID).

Each projection method is one file registering a :class:`Projector`:
``hashed``, ``generated``, ``fastfood``, ``sparse``, ``dense``, ``orthonormal`` (``method="auto"``, the
default, picks one for the size and device: :mod:`.choice`). Every module of
this package is imported (and so registered) on import: a new method is one file, nothing else to edit.
"""

from ..discovery import import_submodules
from .base import Projector, available_methods, register_projector
from .engine import ProjectedSubspace, get_projection, is_projected, projection

PROJECTION_MODULES = import_submodules(__name__, __path__)

__all__ = [
    "PROJECTION_MODULES",
    "ProjectedSubspace",
    "Projector",
    "available_methods",
    "get_projection",
    "is_projected",
    "projection",
    "register_projector",
]
