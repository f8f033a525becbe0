"""Random-projection subspaces θ = θ0 + P ω (Li et al. 2018; Greydanus's ω-space; SAID).

Each projection method is one file registering a :class:`Projector`:
``generated`` (default), ``fastfood``, ``sparse``, ``dense``, ``orthonormal``.
"""

from . import dense, fastfood, generated, orthonormal, sparse  # noqa: F401  (register the methods)
from .base import Projector, available_methods, register_projector
from .engine import ProjectedSubspace, get_projection, is_projected, projection

__all__ = [
    "ProjectedSubspace",
    "Projector",
    "available_methods",
    "get_projection",
    "is_projected",
    "projection",
    "register_projector",
]
