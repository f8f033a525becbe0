"""Our filter-normalised plane next to loss-landscapes' ``random_plane`` on the same model and the
same raw directions, with the time per grid.

    python benchmarks/landscape_peer.py [--steps 21] [--train-steps 300] [--json PATH]

The model is the digits MLP without biases (``mlp-nobias3``: every tensor is a weight matrix, so
loss-landscapes 3.0.6's defective treatment of 1-D tensors — each bias entry set to ±|θ_f| — does
not enter), trained briefly with Adam. loss-landscapes draws its directions inside ``random_plane``
(uniform [0, 1] entries, the second made orthogonal to the first); here its two draws are replaced
by our two N(0, I) draws, so both libraries normalise the same raw vectors. Its grid is then
reproduced exactly — a_i = −½ + i/S and, because the in-place walk zigzags, b = −½ + (j + 1)/S in
even columns but −½ + j/S in odd ones — and our evaluator is run on those coordinates. Printed and
written: the largest difference of the filter-normalised directions, of the loss values, and the
seconds per grid (theirs: one point at a time; ours: vmap-batched and one at a time).
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from subspace_param import landscape
from subspace_param.connectivity.plane import evaluate_grid
from subspace_param.data import load_dataset
from subspace_param.io import markdown_table, write_json
from subspace_param.models import build_model


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=21, help="loss-landscapes' steps (S×S grid)")
    p.add_argument("--train-steps", type=int, default=300, help="Adam steps before drawing the plane")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    import loss_landscapes
    import loss_landscapes.main as ll_main
    from loss_landscapes.metrics import Loss
    from loss_landscapes.model_interface.model_parameters import ModelParameters

    torch.manual_seed(a.seed)
    data = load_dataset("digits")
    model = build_model("mlp-nobias3", data.input_shape, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.x_train, data.y_train
    for i in range(a.train_steps):
        idx = torch.randint(len(x), (128,), generator=torch.Generator().manual_seed(i))
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    params = landscape.parameter_state(model)
    names = list(params)
    gen = torch.Generator().manual_seed(a.seed)
    raw = [{n: torch.randn(t.shape, generator=gen) for n, t in params.items()} for _ in range(2)]

    # 1. the filter normalisation of the same raw vectors
    ours = [landscape.normalize_direction(r, params, "filter") for r in raw]
    theirs = []
    for r in raw:
        mp = ModelParameters([r[n].clone() for n in names])
        mp.filter_normalize_(ModelParameters([params[n].clone() for n in names]))
        theirs.append(dict(zip(names, mp.parameters)))
    direction_diff = max(float((o[n] - t[n]).abs().max()) for o, t in zip(ours, theirs) for n in names)
    direction_rel = max(
        float((o[n] - t[n]).abs().max() / t[n].abs().max()) for o, t in zip(ours, theirs) for n in names
    )

    # 2. their random_plane with our raw draws
    draws = iter(
        [
            ModelParameters([raw[0][n].clone() for n in names]),
            ModelParameters([raw[1][n].clone() for n in names]),
        ]
    )
    S = a.steps
    metric = Loss(F.cross_entropy, x, y)
    with (
        mock.patch.object(ll_main, "rand_u_like", lambda _v: next(draws)),
        mock.patch.object(ll_main, "orthogonal_to", lambda _v: next(draws)),
    ):
        t0 = time.perf_counter()
        theirs_grid = loss_landscapes.random_plane(
            model, metric, distance=1, steps=S, normalization="filter", deepcopy_model=True
        )
        t_theirs = time.perf_counter() - t0

    # 3. ours at their coordinates: a_i = -1/2 + i/S (i < S), b_k = -1/2 + k/S (k ≤ S)
    # their directions are rescaled to ‖θ‖/distance: the same as ours when every tensor is a matrix
    scale = float(torch.sqrt(sum(params[n].double().square().sum() for n in names)))
    u, v = (landscape.base.flatten(d, names) for d in ours)
    u, v = u * (scale / float(u.norm())), v * (scale / float(v.norm()))
    alphas = -0.5 + np.arange(S) / S
    betas = -0.5 + np.arange(S + 1) / S
    loader = [(x, y)]
    origin = landscape.base.flatten(params, names)
    timings = {}
    for mode in (True, False):
        t0 = time.perf_counter()
        values, _ = evaluate_grid(
            model, names, origin, u, v, alphas, betas, loader, batched=mode, progress=False
        )
        timings["batched" if mode else "one at a time"] = time.perf_counter() - t0
    ours_at_theirs = np.array(
        [[values["train_loss"][j + (1 - i % 2), i] for j in range(S)] for i in range(S)]
    )
    loss_diff = float(np.abs(ours_at_theirs - theirs_grid).max())
    rows = [
        {"library": "loss-landscapes 3.0.6 random_plane", "points": S * S, "seconds": t_theirs},
        {"library": "subspace-param, vmap-batched", "points": S * (S + 1), "seconds": timings["batched"]},
        {
            "library": "subspace-param, one point at a time",
            "points": S * (S + 1),
            "seconds": timings["one at a time"],
        },
    ]
    result = {
        "model": "mlp-nobias3 on digits (1347 training images, one batch)",
        "num_params": int(origin.numel()),
        "steps": S,
        "filter_direction_max_abs_diff": direction_diff,
        "filter_direction_max_rel_diff": direction_rel,
        "loss_max_abs_diff": loss_diff,
        "loss_range": [float(theirs_grid.min()), float(theirs_grid.max())],
        "timings": rows,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(
        f"filter-normalised directions: max |ours − theirs| = {direction_diff:.2e} "
        f"(relative {direction_rel:.2e})\n"
        f"loss on their {S}×{S} grid: max |ours − theirs| = {loss_diff:.2e} "
        f"(values {result['loss_range'][0]:.4f} … {result['loss_range'][1]:.4f})"
    )
    print(markdown_table(rows))
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
