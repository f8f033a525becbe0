"""Fused Triton kernels for subspace weights and the regulariser (installed as ``subspace_param.kernels``)."""
