"""Geometries: maps from a point to K affine vertex coefficients. One file per geometry."""

from .base import Geometry, ScalarPathGeometry, geometry_from_spec, register_geometry, registered_geometries
from .bezier import Bezier
from .chain import Chain
from .line import Line
from .simplex import Simplex

__all__ = [
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
