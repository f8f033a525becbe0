"""SAID (Aghajanyan et al. 2020) on a small BERT: the intrinsic dimension of *fine-tuning*.

A BERT built from a config (no download) is first trained on an in-memory pretraining task
(label 1 when a sequence of 12 tokens holds ≥ 2 "signal" tokens, ids < 8); it is then fine-tuned on
a related task (≥ 4 signal tokens among ids < 12; 38% positive, so chance is 62%) either fully (the
baseline) or in random subspaces θ = θ0 + λ_l (P ω)_l of growing d with one trained scale λ_l per
tensor (``per_tensor_scale=True``, the SAID variant). d_int90 is the smallest d whose test accuracy
reaches 90% of full fine-tuning.

Adam moves every coordinate of ω by about lr per step, so θ moves by about lr·√d (P has unit
columns): with one lr for all d, large d overshoots (measured: fastfood and sparse at d = 3000 stall
at the majority class with lr 1e-2, and reach 100% with 3e-3). The subspace lr is therefore
``--lr · √(300 / d)`` (``--lr-scaling sqrt``, the default), the same step in weight space at every d;
``--lr-scaling none`` keeps ``--lr`` for every d.

    python examples/said_bert.py [--dims 10 30 100 300 1000 3000] [--steps 300] [--out runs/said_bert]

Written to --out: ``said.json`` (every run and d_int90), ``said.md`` and ``said.png``.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from tqdm.auto import tqdm

import subspace_param as sp
from subspace_param.experiments.intrinsic_dim import d_int
from subspace_param.io import markdown_table, save_figure, write_json, write_text

VOCAB, LENGTH = 40, 12


def make_task(n: int, seed: int, signal: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (n, LENGTH), generator=g)
    return ids, ((ids < signal).sum(1) >= count).long()


def build_bert(seed: int):
    import transformers as tr

    torch.manual_seed(seed)
    config = tr.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=LENGTH, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return tr.BertForSequenceClassification(config)


def fit(model, params, data, steps: int, lr: float, seed: int, desc: str, progress: bool) -> None:
    ids, labels = data
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        idx = torch.randint(len(ids), (64,), generator=g)
        loss = model(input_ids=ids[idx], labels=labels[idx]).loss
        if not torch.isfinite(loss):
            raise SystemExit(f"{desc}: the loss diverged ({float(loss)}); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@torch.no_grad()
def accuracy(model, data) -> float:
    model.eval()
    ids, labels = data
    return float((model(input_ids=ids).logits.argmax(-1) == labels).float().mean())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", type=int, nargs="+", default=[10, 30, 100, 300, 1000, 3000])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--pretrain-steps", type=int, default=400)
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps per run")
    p.add_argument("--train-size", type=int, default=2048)
    p.add_argument("--method", default="auto", help="projection method")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam lr of ω and λ at d = 300")
    p.add_argument("--lr-scaling", choices=["sqrt", "none"], default="sqrt", help="lr · √(300/d), or --lr")
    p.add_argument("--out", type=Path, default=Path("runs/said_bert"))
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    progress = not a.no_progress
    pretrain = make_task(a.train_size, 0, signal=8, count=2)
    train, test = make_task(a.train_size, 1, signal=12, count=4), make_task(1024, 2, signal=12, count=4)
    base = build_bert(0)
    fit(base, base.parameters(), pretrain, a.pretrain_steps, 1e-3, 0, "pretrain", progress)
    runs = []
    for seed in a.seeds:
        full = copy.deepcopy(base)
        fit(full, full.parameters(), train, a.steps, 1e-3, seed, "full fine-tuning", progress)
        runs.append({"d": None, "seed": seed, "test_acc": accuracy(full, test)})
        for d in a.dims:
            model = copy.deepcopy(base)
            sub = sp.projection(model, d, method=a.method, seed=seed, per_tensor_scale=True)
            lr = a.lr * (300 / d) ** 0.5 if a.lr_scaling == "sqrt" else a.lr
            fit(model, list(sub.parameters()), train, a.steps, lr, seed, f"d={d}", progress)
            runs.append(
                {"d": d, "seed": seed, "test_acc": accuracy(model, test), "method": sub.method, "lr": lr}
            )
    baseline = sum(r["test_acc"] for r in runs if r["d"] is None) / len(a.seeds)
    rows = [
        {"d": d, "test_acc": sum(r["test_acc"] for r in runs if r["d"] == d) / len(a.seeds)} for d in a.dims
    ]
    d90 = d_int([r["d"] for r in rows], [r["test_acc"] for r in rows], baseline)
    summary = {
        "baseline_full_finetuning": baseline,
        "pretrained_zero_shot": accuracy(base, test),
        "majority_class": max(float(test[1].float().mean()), 1 - float(test[1].float().mean())),
        "d_int90": d90,
        "num_params": sum(p.numel() for p in base.parameters()),
        "rows": rows,
        "runs": runs,
    }
    write_json(a.out / "said.json", summary)
    text = (
        f"BERT (D = {summary['num_params']:,}), full fine-tuning {baseline:.4f}, "
        "pretrained without fine-tuning "
        f"{summary['pretrained_zero_shot']:.4f}, majority class {summary['majority_class']:.4f}, "
        f"**d_int90 = {d90}** (SAID, per-tensor scales)\n\n" + markdown_table(rows)
    )
    write_text(a.out / "said.md", text + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["d"] for r in rows], [r["test_acc"] for r in rows], marker="o", label="SAID subspace")
    ax.axhline(baseline, color="k", lw=1, label="full fine-tuning")
    ax.axhline(0.9 * baseline, color="k", ls="--", lw=1, label="90%")
    ax.set(xscale="log", xlabel="d", ylabel="test accuracy", title="intrinsic dimension of fine-tuning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, a.out / "said.png")
    plt.close(fig)
    print(text)
    return summary


if __name__ == "__main__":
    main()
