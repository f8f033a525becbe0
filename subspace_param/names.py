"""Names of the state the engine keeps on a wrapped model (a leaf module: it imports nothing).

The point and coefficients are buffers of the *root* model, so ``.to()``, ``state_dict`` and DDP's
buffer broadcast carry them; the spec and the fused state are plain attributes of the root.
"""

#: buffer of the root: the current point, shape ``(P,)`` or ``(G, P)`` in layerwise mode
POINT_BUFFER = "_subspace_point"
#: key of c(point) in state_dicts written before the coefficients were derived from the point
#: (dropped on load; the coefficients are now computed from :data:`POINT_BUFFER` where needed)
LEGACY_COEFFICIENTS_KEY = "_subspace_coefficients"
#: attribute of the root: the subspace's spec (geometry, covered tensors, groups, backend, ties, …),
#: saved with the subspace
SPEC_ATTRIBUTE = "_subspace_spec"
#: attribute of the root: run-time facts that are not saved (the Geometry object, whether Triton
#: can run here), resolved once at wrap time so nothing is looked up inside a compiled graph
RUNTIME_ATTRIBUTE = "_subspace_runtime"
#: attribute of the root: the fused multi-tensor state (:class:`subspace_param.fused.FusedWeights`)
FUSED_ATTRIBUTE = "_subspace_fused"
#: attribute set on the library's hook functions (an exported copy strips every hook carrying it)
HOOK_MARK = "is_subspace_hook"
#: attribute of the root: the state of the stale-point check (:mod:`subspace_param.stale_point`)
STALE_ATTRIBUTE = "_subspace_stale_point"
