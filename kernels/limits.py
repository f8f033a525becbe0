"""Limits shared by the kernels and the engine (a leaf module: it imports nothing)."""

#: the Triton kernels unroll over the vertices: K ≤ MAX_VERTICES (more vertices use PyTorch ops)
MAX_VERTICES = 8
