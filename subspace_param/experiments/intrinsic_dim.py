"""Intrinsic dimension (Li et al. 2018): train in random subspaces of growing dimension d.

For each d of the grid and each seed, the model is trained in θ = θ0 + P ω (ω ∈ R^d, see
:func:`subspace_param.projection`) and its test accuracy recorded; ``d_int90`` is the smallest d
on the grid whose mean accuracy over seeds reaches 0.9 × the baseline (by default the same
model trained directly with the same recipe; not interpolated).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import Dataset
from ..io import markdown_table, save_figure, write_json, write_text
from ..projections import projection
from ..training import TrainConfig, metrics, predict, train

ModelFactory = Callable[[], nn.Module]

#: Greydanus's / Li et al.'s recipe for ω-space training: Adam, lr 3e-3, betas (0.9, 0.99), constant lr.
OMEGA_RECIPE = TrainConfig(
    epochs=30,
    lr=3e-3,
    optimizer="adam",
    betas=(0.9, 0.99),
    weight_decay=0.0,
    schedule="constant",
    warmup_epochs=0.0,
)


def d_int(
    dims: Sequence[int], mean_accuracy: Sequence[float], baseline: float, fraction: float = 0.9
) -> int | None:
    """Smallest d (in sorted order) with mean accuracy ≥ fraction × baseline; None if none reaches it."""
    for d, acc in sorted(zip(dims, mean_accuracy)):
        if acc >= fraction * baseline:
            return d
    return None


@dataclasses.dataclass
class IntrinsicDimResult:
    """Runs of a sweep (one row per (d, seed), d = None for direct training) and the summary."""

    runs: list[dict[str, Any]]
    baseline: float
    fraction: float
    method: str
    num_params: int
    settings: dict[str, Any]

    def summary(self) -> list[dict[str, Any]]:
        """Mean ± std of test accuracy per d (direct training last)."""
        rows = []
        keys = [*sorted({r["dim"] for r in self.runs if r["dim"] is not None}), None]
        for d in keys:
            accs = torch.tensor([r["test_acc"] for r in self.runs if r["dim"] == d], dtype=torch.float64)
            if len(accs) == 0:
                continue
            rows.append(
                {
                    "d": "full" if d is None else d,
                    "seeds": len(accs),
                    "test_acc": float(accs.mean()),
                    "std": float(accs.std()) if len(accs) > 1 else 0.0,
                }
            )
        return rows

    @property
    def d_int90(self) -> int | None:
        rows = [r for r in self.summary() if r["d"] != "full"]
        return d_int([r["d"] for r in rows], [r["test_acc"] for r in rows], self.baseline, self.fraction)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "num_params": self.num_params,
            "baseline": self.baseline,
            "fraction": self.fraction,
            "d_int90": self.d_int90,
            "summary": self.summary(),
            "settings": self.settings,
            "runs": self.runs,
        }

    def markdown(self) -> str:
        head = (
            f"D = {self.num_params:,}, method = {self.method}, baseline accuracy {self.baseline:.4f}, "
            f"threshold {self.fraction:.2f} × baseline = {self.fraction * self.baseline:.4f}, "
            f"**d_int{round(self.fraction * 100)} = {self.d_int90}**\n\n"
        )
        return head + markdown_table(self.summary())

    def plot(self, path: str | Path, title: str = "") -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.summary() if r["d"] != "full"]
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ax.errorbar(
            [r["d"] for r in rows],
            [r["test_acc"] for r in rows],
            yerr=[r["std"] for r in rows],
            marker="o",
            capsize=3,
            label=f"subspace ({self.method})",
        )
        ax.axhline(self.baseline, color="k", lw=1, label="direct training (baseline)")
        ax.axhline(
            self.fraction * self.baseline, color="k", ls="--", lw=1, label=f"{self.fraction:.0%} of baseline"
        )
        if self.d_int90 is not None:
            ax.axvline(self.d_int90, color="tab:red", ls=":", label=f"d_int90 = {self.d_int90}")
        ax.set_xscale("log")
        ax.set_xlabel("subspace dimension d")
        ax.set_ylabel("test accuracy")
        ax.set_title(title or "intrinsic dimension")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = save_figure(fig, path)
        plt.close(fig)
        return out

    def save(self, out_dir: str | Path, name: str = "intrinsic_dim") -> dict[str, Path]:
        out_dir = Path(out_dir)
        return {
            "json": write_json(out_dir / f"{name}.json", self.to_dict()),
            "md": write_text(out_dir / f"{name}.md", self.markdown() + "\n"),
            "png": self.plot(out_dir / f"{name}.png"),
        }


def train_in_subspace(
    build_model: ModelFactory,
    data: Dataset,
    dim: int | None,
    *,
    seed: int,
    method: str = "auto",
    cfg: TrainConfig = OMEGA_RECIPE,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    **options: Any,
) -> dict[str, Any]:
    """Train one model in a d-dimensional random subspace (``dim=None``: directly, all D weights)
    and return its final metrics and per-epoch history (with test accuracy per epoch)."""
    torch.manual_seed(seed)
    model = build_model().to(device)
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    resolved = None
    if dim is not None:
        resolved = projection(model, dim, method=method, seed=seed, **options).method
    train_loader, _, test_loader = data.loaders(batch_size, seed=seed)
    start = time.perf_counter()
    desc = f"d={dim if dim is not None else 'full'} seed={seed}"
    history = train(
        model, train_loader, dataclasses.replace(cfg, desc=desc), device=device, eval_loader=test_loader
    )
    seconds = time.perf_counter() - start
    m = metrics(*predict(model, test_loader, device))
    return {
        "dim": dim,
        "seed": seed,
        "method": resolved,
        "num_params": num_params,
        "test_acc": m["acc"],
        "test_loss": m["nll"],
        "train_loss": history[-1]["loss"],
        "train_acc": history[-1]["train_acc"],
        "seconds": seconds,
        "history": history,
    }


def intrinsic_dimension(
    build_model: ModelFactory,
    data: Dataset,
    dims: Sequence[int] | None = None,
    *,
    seeds: Sequence[int] = (0,),
    method: str = "auto",
    cfg: TrainConfig = OMEGA_RECIPE,
    batch_size: int = 256,
    baseline: float | None = None,
    fraction: float = 0.9,
    search: str = "grid",
    bounds: tuple[int, int] | None = None,
    rtol: float = 0.1,
    device: torch.device | str = "cpu",
    **options: Any,
) -> IntrinsicDimResult:
    """d_int90: the smallest d whose mean test accuracy over ``seeds`` reaches ``fraction`` × the
    baseline (by default the same model trained directly, unless ``baseline`` is given, e.g. 1.0
    for Li et al.'s "global" MNIST threshold).

    ``search="grid"`` trains every d of ``dims``. ``search="bisect"`` assumes accuracy grows with d
    and bisects: over the sorted ``dims`` when given (⌈log₂ n⌉ + 1 sizes instead of n, the grid's
    own answer), otherwise over the integers of ``bounds`` = (lo, hi) on a log scale — the
    geometric midpoint ⌊√(lo·hi)⌉ is trained, the bracket [fails, reaches] halves, and the search
    stops when hi/lo ≤ 1 + ``rtol`` or hi − lo ≤ 1 (d_int90 = hi). hi must reach the threshold
    (otherwise d_int90 is None); if lo already does, d_int90 = lo.

    >>> d_int([10, 100, 1000], [0.3, 0.85, 0.95], baseline=0.97)
    1000
    """
    if search not in ("grid", "bisect"):
        raise ValueError(f"search must be 'grid' or 'bisect', got {search!r}")
    if dims is not None and (not dims or any(int(d) < 1 for d in dims)):
        raise ValueError(f"dims must be a non-empty list of positive ints, got {list(dims)}")
    if dims is None and (search == "grid" or bounds is None):
        raise ValueError("give dims (a grid), or search='bisect' with bounds=(lo, hi)")
    if bounds is not None and not (1 <= int(bounds[0]) < int(bounds[1])):
        raise ValueError(f"bounds must be (lo, hi) with 1 ≤ lo < hi, got {bounds}")
    runs: list[dict[str, Any]] = []
    trained: dict[int, float] = {}

    def train_at(d: int | None) -> float:
        for s in seeds:
            runs.append(
                train_in_subspace(
                    build_model, data, d, seed=s, method=method, cfg=cfg, batch_size=batch_size,
                    device=device, **options,
                )
            )  # fmt: skip
        accs = [r["test_acc"] for r in runs if r["dim"] == d]
        mean = sum(accs) / len(accs)
        if d is not None:
            trained[d] = mean
        return mean

    if baseline is None:
        baseline = train_at(None)
    threshold = fraction * baseline
    trace: list[dict[str, Any]] = []

    def reaches(d: int) -> bool:
        acc = trained[d] if d in trained else train_at(d)
        trace.append({"d": d, "test_acc": acc, "reaches": acc >= threshold})
        return acc >= threshold

    if search == "grid":
        for d in sorted(int(d) for d in dims):  # type: ignore[union-attr]
            train_at(d)
        rule = "every d of the grid"
    elif dims is not None:
        grid = sorted({int(d) for d in dims})
        lo_i, hi_i = -1, len(grid) - 1
        if reaches(grid[hi_i]):
            while hi_i - lo_i > 1:
                mid = (lo_i + hi_i) // 2
                if reaches(grid[mid]):
                    hi_i = mid
                else:
                    lo_i = mid
        rule = "bisection over the sorted grid (accuracy assumed monotone in d)"
    else:
        lo, hi = int(bounds[0]), int(bounds[1])  # type: ignore[index]
        if reaches(hi) and not reaches(lo):
            while hi / lo > 1 + rtol and hi - lo > 1:
                mid = min(hi - 1, max(lo + 1, round(math.sqrt(lo * hi))))
                if reaches(mid):
                    hi = mid
                else:
                    lo = mid
        rule = f"bisection on log d in [{bounds[0]}, {bounds[1]}] until hi/lo ≤ 1 + {rtol} or hi − lo ≤ 1"  # type: ignore[index]
    num_params = runs[0]["num_params"]
    settings = {
        "dims": list(dims) if dims is not None else None,
        "search": search,
        "stopping_rule": rule,
        "bounds": list(bounds) if bounds is not None else None,
        "bisection_trace": trace,
        "seeds": list(seeds),
        "batch_size": batch_size,
        "dataset": data.name,
        "recipe": dataclasses.asdict(cfg),
        "options": options,
    }
    resolved = next((r["method"] for r in runs if r.get("method")), method)
    return IntrinsicDimResult(runs, baseline, fraction, resolved, num_params, settings)
