"""Limits shared by the kernels and the engine (a leaf module: it imports nothing)."""

#: the Triton kernels unroll over the vertices: K ≤ MAX_VERTICES (more vertices use PyTorch ops)
MAX_VERTICES = 8

#: segment alignment of the flat vertex buffers, in elements (16: 128-bit accesses for every dtype)
ALIGN = 16


def padded_size(n: int) -> int:
    """Segment length of an ``n``-element tensor in the flat buffers (a multiple of ALIGN, ≥ ALIGN)."""
    return max(ALIGN, -(-n // ALIGN) * ALIGN)


def padded_offsets(sizes: "list[int]") -> "list[int]":
    """Start of each tensor's segment, plus the total padded length (length L + 1)."""
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + padded_size(n))
    return offsets
