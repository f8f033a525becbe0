"""Compile every production kernel configuration ahead of time for real GPU targets (no GPU needed).

    python benchmarks/aot_compile.py --arch 80 90 [--quick] [--jobs N] [--json PATH]

Each configuration is specialised exactly as the launcher does it: the arguments the library
passes (16-byte-aligned buffers from the allocator, divisible sizes) go through Triton's own
binder (``JITFunction._pack_args``), then ``triton.compile(ASTSource(...), target=GPUTarget("cuda",
arch, 32))`` with the launch options of :data:`subspace_param.kernels.combine.LAUNCH_CONFIG`, and
the bundled ``ptxas -v`` reports registers and spills. Kernels and configurations:

* ``combine`` / ``gram`` / ``combine_grad`` (per-tensor ops), ``seg_fwd`` / ``seg_bwd`` (one launch
  for many tensors; the backward reads T = 8 or 32 weight-gradient pointers), K = 2…8, fp32,
  bf16, fp16, Gram and regulariser term (``HAS_A``) on and off — the bandwidth kernels;
* ``rademacher_matvec`` / ``rademacher_rmatvec`` (generated projection, fp32) and
  ``hashed_gather`` / ``hashed_scatter`` (hashed projection, s = K nonzeros per row, fp32) — compute
  and gather kernels (not held to 128-bit accesses).

Columns: registers, spill bytes (stores + loads), shared memory, the widest global load and store
(bits), and the static count of global loads and stores in the PTX. ``idx64``: the element offsets
are 64-bit (no 32-bit offset register is widened to an address), checked on a launch whose size
is past 2³¹. The last line is exactly
``<N> kernel configurations compiled for sm_80, sm_90: <F> failed, <S> with spills, <V> without
128-bit loads`` (V counts the bandwidth kernels), and the exit status is 1 if F > 0.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Config:
    kernel: str
    arch: int
    dtype: str = "fp32"
    k: int = 2
    gram: bool = False
    has_a: bool = False
    tensors: int = 1
    big: bool = False  # a size past 2³¹ (int64 sizes)

    @property
    def name(self) -> str:
        parts = [f"sm_{self.arch}", self.kernel, self.dtype, f"K={self.k}"]
        if self.gram:
            parts.append("GRAM")
        if self.has_a:
            parts.append("HAS_A")
        if self.tensors > 1:
            parts.append(f"T={self.tensors}")
        if self.big:
            parts.append("n>2^31")
        return " ".join(parts)

    @property
    def bandwidth(self) -> bool:
        return not self.kernel.startswith(("rademacher", "hashed"))


@dataclass
class Report:
    config: Config
    ok: bool = False
    error: str = ""
    registers: int = -1
    spill_bytes: int = -1
    shared: int = -1
    widest_load: int = 0
    widest_store: int = 0
    loads: int = 0
    stores: int = 0
    idx64: bool = True
    extra: dict = field(default_factory=dict)


class _FakeTensor:
    """What the binder needs of a tensor argument: dtype and an aligned data pointer (like the
    caching allocator's; no memory behind it)."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def data_ptr(self) -> int:
        return 1 << 20


def _arguments(cfg: Config):  # type: ignore[no-untyped-def]
    """(jit function, positional args, constexpr kwargs, options) as the library launches them."""
    import triton.language as tl
    from subspace_param.kernels.combine import launch_config
    from subspace_param.kernels.hashing_triton import gather_kernel, scatter_kernel
    from subspace_param.kernels.rademacher_triton import matvec_kernel, rmatvec_kernel
    from subspace_param.kernels.triton_kernels import combine_bwd, combine_fwd

    dtype = DTYPES[cfg.dtype]
    block, warps = launch_config(dtype, 1 << 20)
    t = _FakeTensor(dtype)
    f32, i64 = _FakeTensor(torch.float32), _FakeTensor(torch.int64)
    vs = tuple(_FakeTensor(dtype) for _ in range(cfg.k))
    n = (1 << 31) + 16 if cfg.big else 1 << 20
    common = dict(K=cfg.k, ACC=tl.float32, BLOCK=block, num_warps=warps)
    if cfg.kernel == "combine":
        return combine_fwd, (t, f32, vs, t, n, f32), dict(common, WRITE_OUT=True, GRAM=False, SEGMENTED=False)
    if cfg.kernel == "gram":
        return combine_fwd, (t, t, vs, f32, n, f32), dict(common, WRITE_OUT=False, GRAM=True, SEGMENTED=False)
    if cfg.kernel == "seg_fwd":
        return (
            combine_fwd,
            (t, f32, vs, f32, n, i64),
            dict(common, WRITE_OUT=True, GRAM=cfg.gram, SEGMENTED=True),
        )
    if cfg.kernel in ("combine_grad", "seg_bwd"):
        seg = cfg.kernel == "seg_bwd"
        gs = tuple(_FakeTensor(dtype) for _ in range(cfg.tensors))
        return (
            combine_bwd,
            (vs, gs, f32, f32, vs, n, i64 if seg else f32),
            dict(common, T=cfg.tensors, WANT=(1 << cfg.k) - 1, HAS_G=True, HAS_A=cfg.has_a, SEGMENTED=seg),
        )
    if cfg.kernel == "rademacher_matvec":
        return matvec_kernel, (f32, f32, 0, n, 1000, 7, 11, 13, 0.5), dict(BLOCK_R=64, BLOCK_W=4, num_warps=4)
    if cfg.kernel == "rademacher_rmatvec":
        return (
            rmatvec_kernel,
            (f32, f32, 0, n, 1000, 4096, 7, 11, 13, 0.5),
            dict(BLOCK_R=64, BLOCK_W=4, num_warps=4),
        )
    if cfg.kernel in ("hashed_gather", "hashed_scatter"):
        fn = gather_kernel if cfg.kernel == "hashed_gather" else scatter_kernel
        return fn, (f32, i64, f32, 0, n, 7, 11, 13), dict(NNZ=cfg.k, BLOCK_R=1024, num_warps=4)
    raise ValueError(f"unknown kernel {cfg.kernel!r}")


def _ptxas() -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas")


_WIDTH = {"b8": 8, "u8": 8, "s8": 8, "b16": 16, "u16": 16, "s16": 16, "f16": 16, "b32": 32, "u32": 32,
          "s32": 32, "f32": 32, "b64": 64, "u64": 64, "s64": 64, "f64": 64}  # fmt: skip


def access_widths(ptx: str, op: str) -> list[int]:
    """Bits of every ``ld.global``/``st.global`` in ``ptx`` (vector count × element width)."""
    widths = []
    for m in re.finditer(rf"\b{op}\.global(?:\.[a-z0-9_]+)*", ptx):
        parts = m.group(0).split(".")
        vec = next((int(p[1:]) for p in parts if re.fullmatch(r"v[0-9]", p)), 1)
        elem = next((_WIDTH[p] for p in reversed(parts) if p in _WIDTH), 0)
        widths.append(vec * elem)
    return widths


def offsets_are_64bit(ptx: str) -> bool:
    """False if a 32-bit register is widened into a byte offset (``mul.wide.s32 %rd, %r, 2|4|8``):
    the pattern of int32 element indices."""
    return re.search(r"mul\.wide\.[su]32\s+%rd\d+,\s*%r\d+,\s*(2|4|8);", ptx) is None


def compile_one(cfg: Config) -> Report:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    report = Report(cfg)
    try:
        fn, args, kwargs = _arguments(cfg)
        target = GPUTarget("cuda", cfg.arch, 32)
        backend = make_backend(target)
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
        kernel = triton.compile(
            ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__
        )
        ptx = kernel.asm["ptx"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "k.ptx"
            path.write_text(ptx)
            arch = re.search(r"\.target\s+(sm_\w+)", ptx)
            out = subprocess.run(
                [_ptxas(), f"-arch={arch.group(1) if arch else f'sm_{cfg.arch}'}", "-v", str(path),
                 "-o", str(Path(tmp) / "k.cubin")],
                capture_output=True, text=True,
            )  # fmt: skip
        info = out.stderr + out.stdout
        if out.returncode:
            raise RuntimeError(
                f"ptxas failed: {info.strip().splitlines()[-1] if info.strip() else out.returncode}"
            )
        regs = re.search(r"Used (\d+) registers", info)
        spills = re.findall(r"(\d+) bytes spill (?:stores|loads)", info)
        report.registers = int(regs.group(1)) if regs else -1
        report.spill_bytes = sum(int(s) for s in spills)
        report.shared = int(kernel.metadata.shared)
        loads, stores = access_widths(ptx, "ld"), access_widths(ptx, "st")
        report.loads, report.stores = len(loads), len(stores)
        report.widest_load, report.widest_store = max(loads, default=0), max(stores, default=0)
        report.idx64 = offsets_are_64bit(ptx)
        report.ok = True
    except Exception as exc:  # a failed compile is a row of the report, not a crash of the run
        report.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return report


def configurations(archs: list[int], quick: bool) -> list[Config]:
    ks = (2, 8) if quick else range(2, 9)
    dtypes = ("fp32", "bf16") if quick else tuple(DTYPES)
    configs: list[Config] = []
    for arch in archs:
        for dtype in dtypes:
            for k in ks:
                configs += [
                    Config("combine", arch, dtype, k),
                    Config("gram", arch, dtype, k),
                    Config("combine_grad", arch, dtype, k, has_a=False),
                    Config("combine_grad", arch, dtype, k, has_a=True),
                    Config("seg_fwd", arch, dtype, k, gram=False),
                    Config("seg_fwd", arch, dtype, k, gram=True),
                    Config("seg_bwd", arch, dtype, k, has_a=False, tensors=8),
                    Config("seg_bwd", arch, dtype, k, has_a=True, tensors=8),
                ]
        configs += [
            Config("seg_bwd", arch, "fp32", 2, has_a=True, tensors=32),
            Config("combine", arch, "fp32", 2, big=True),
            Config("combine_grad", arch, "bf16", 3, has_a=True, big=True),
            Config("rademacher_matvec", arch, big=True),
            Config("rademacher_rmatvec", arch, big=True),
            Config("hashed_gather", arch, k=8, big=True),
            Config("hashed_scatter", arch, k=8, big=True),
        ]
    return configs


def summary(reports: list[Report], archs: list[int]) -> str:
    failed = sum(not r.ok for r in reports)
    spills = sum(r.ok and r.spill_bytes > 0 for r in reports)
    narrow = sum(r.ok and r.config.bandwidth and r.widest_load < 128 for r in reports)
    targets = ", ".join(f"sm_{a}" for a in archs)
    return (
        f"{len(reports)} kernel configurations compiled for {targets}: {failed} failed, "
        f"{spills} with spills, "
        f"{narrow} without 128-bit loads"
    )


def table(reports: list[Report]) -> str:
    lines = ["| config | regs | spill B | smem B | widest ld | widest st | ld | st | idx64 |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in reports:
        if not r.ok:
            lines.append(f"| {r.config.name} | FAILED: {r.error} | | | | | | | |")
            continue
        lines.append(
            f"| {r.config.name} | {r.registers} | {r.spill_bytes} | {r.shared} | {r.widest_load} | "
            f"{r.widest_store} | {r.loads} | {r.stores} | {'yes' if r.idx64 else 'NO'} |"
        )
    return "\n".join(lines)


def run(archs: list[int], quick: bool = False, jobs: int | None = None) -> list[Report]:
    configs = configurations(archs, quick)
    jobs = jobs or max(1, min(len(configs), os.cpu_count() or 1))
    if jobs == 1:
        return [compile_one(c) for c in configs]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(compile_one, configs))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", type=int, default=[80, 90], help="compute capabilities, e.g. 80 90")
    p.add_argument("--quick", action="store_true", help="K ∈ {2, 8}, fp32 and bf16 only")
    p.add_argument("--jobs", type=int, default=None, help="parallel compiles (default: one per CPU)")
    p.add_argument("--json", default=None, help="also write the rows here as JSON")
    a = p.parse_args(argv)
    # real targets, whatever the caller's shell says: under TRITON_INTERPRET=1 ``@triton.jit`` gives
    # interpreter objects, which do not compile (set before the kernels are first imported)
    os.environ.pop("TRITON_INTERPRET", None)
    reports = run(a.arch, a.quick, a.jobs)
    print(table(reports))
    if a.json:
        from subspace_param.io import write_json

        write_json(a.json, [dict(asdict(r), name=r.config.name) for r in reports])
    print(summary(reports, a.arch))
    return 1 if any(not r.ok for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
