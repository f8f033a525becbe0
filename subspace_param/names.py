"""Names of the state the engine keeps on a wrapped model (a leaf module: it imports nothing).

The point and coefficients are buffers of the *root* model, so ``.to()``, ``state_dict`` and DDP's
buffer broadcast carry them; the spec and the fused state are plain attributes of the root.
"""

#: buffer of the root: the current point, shape ``(P,)`` or ``(G, P)`` in layerwise mode
POINT_BUFFER = "_subspace_point"
#: buffer of the root: c(point), shape ``(G, K)``; row ``group`` feeds each parametrization
COEFFICIENTS_BUFFER = "_subspace_coefficients"
#: attribute of the root: the subspace's spec (geometry, covered tensors, options)
SPEC_ATTRIBUTE = "_subspace_spec"
#: attribute of the root: the fused multi-tensor state (:class:`subspace_param.fused.FusedWeights`)
FUSED_ATTRIBUTE = "_subspace_fused"
