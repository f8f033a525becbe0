"""subspace-param: turn any PyTorch model into a line, curve, chain, simplex or random-projection
subspace of networks with one call, through ``torch.nn.utils.parametrize``.

>>> import torch, subspace_param as sp
>>> net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> sub = sp.line(net, seed=0)          # net is now a line of networks
>>> _ = sub.sample()                    # draw α ~ U[0, 1]
>>> loss = net(torch.randn(2, 5)).sum() + sub.regularizer(beta=1.0)
>>> plain = sub.export(0.5)             # an ordinary nn.Sequential at the midpoint
>>> type(plain) is torch.nn.Sequential
True
"""

from . import landscape
from .api import chain, curve, line, simplex
from .batchnorm import reestimate_bn
from .connectivity import align, alignment, connect
from .errors import ArchitectureMismatchError, PointError, SubspaceError
from .geometry import Bezier, Chain, Geometry, Line, Simplex, register_geometry
from .model_check import check_model
from .projections import (
    ProjectedSubspace,
    Projector,
    get_projection,
    is_projected,
    projection,
    register_projector,
)
from .selection import ModelReport
from .serialization import load, save
from .subspace import Subspace, get_subspace, is_wrapped, wrap
from .vertex_init import Copy, FromModels, Independent, Perturb, Rebuild, VertexInit

__version__ = "0.1.0"

__all__ = [
    "ArchitectureMismatchError",
    "Bezier",
    "Chain",
    "Copy",
    "FromModels",
    "Geometry",
    "Independent",
    "Line",
    "ModelReport",
    "Perturb",
    "PointError",
    "ProjectedSubspace",
    "Projector",
    "Rebuild",
    "Simplex",
    "Subspace",
    "SubspaceError",
    "VertexInit",
    "align",
    "alignment",
    "chain",
    "check_model",
    "connect",
    "curve",
    "get_projection",
    "get_subspace",
    "is_projected",
    "is_wrapped",
    "landscape",
    "line",
    "load",
    "projection",
    "reestimate_bn",
    "register_geometry",
    "register_projector",
    "save",
    "simplex",
    "wrap",
]
