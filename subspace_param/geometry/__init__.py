"""Geometries: maps from a point to K affine vertex coefficients. One file per geometry.

Every module of this package is imported (and so registered) on import: a new geometry is one file
with a ``@register_geometry("name")`` class, and nothing else to edit.
"""

from ..discovery import import_submodules
from .base import Geometry, ScalarPathGeometry, geometry_from_spec, register_geometry, registered_geometries
from .bezier import Bezier
from .chain import Chain
from .line import Line
from .simplex import Simplex

GEOMETRY_MODULES = import_submodules(__name__, __path__)

__all__ = [
    "GEOMETRY_MODULES",
    "Bezier",
    "Chain",
    "Geometry",
    "Line",
    "ScalarPathGeometry",
    "Simplex",
    "geometry_from_spec",
    "register_geometry",
    "registered_geometries",
]
