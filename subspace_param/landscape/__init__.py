"""Loss landscapes as researchers draw them: a plane through a centre along two directions, or
through any three models, evaluated on a grid with BN re-estimated per point (batched with vmap
when the model has no BN).

One file per kind of direction: :func:`random_direction` (Li et al. 2018's filter normalisation,
or layer / model / none), :func:`pca_directions` (PCA of a saved trajectory, with explained
variance), :func:`hessian_directions` (top-k Hessian eigenvectors by Lanczos on ``torch.func``
Hessian-vector products, with eigenvalues). :func:`plane` builds the plane, :func:`evaluate_plane`
evaluates it into a :class:`~subspace_param.connectivity.LossPlane` (JSON/npz, contour and 3-D plots).
"""

from .base import Directions, check_plain_model, parameter_state
from .hessian import hessian_directions, hessian_vector_product, lanczos
from .pca import pca_directions
from .plane import Plane, evaluate_plane, plane
from .random import normalize_direction, random_direction

__all__ = [
    "Directions",
    "Plane",
    "check_plain_model",
    "evaluate_plane",
    "hessian_directions",
    "hessian_vector_product",
    "lanczos",
    "normalize_direction",
    "parameter_state",
    "pca_directions",
    "plane",
    "random_direction",
]
