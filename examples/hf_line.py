"""A line of BERT classifiers trained by an unmodified Hugging Face Trainer (sub.autosample), then
evaluated along α; with --lora, a line of LoRA adapters on a frozen base next to one plain LoRA.

    python examples/hf_line.py --out runs/hf_line            # full model: a line of small BERTs
    python examples/hf_line.py --lora --out runs/hf_lora     # a line of LoRA adapters vs plain LoRA

The model is built from a config (no download) and the task is made in memory: a sequence of
tokens is labelled 1 when it holds more "signal" tokens (ids < 8) than a threshold. Written to
--out: ``summary.json``, ``along_alpha.csv``, ``along_alpha.png`` and ``midpoint/`` (the exported
midpoint, ``save_pretrained``: a full model, or a PEFT adapter with --lora). The Trainer's reported
loss excludes the regulariser (see subspace_param.autosample).
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
from pathlib import Path

import torch

import subspace_param as sp
from subspace_param.io import save_figure, write_json, write_text
from subspace_param.metrics import classification_metrics

VOCAB, LENGTH, SIGNAL = 40, 12, 8


def make_task(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (n, LENGTH), generator=g)
    labels = ((ids < SIGNAL).sum(1) >= 3).long()  # about half the sequences
    return [{"input_ids": ids[i], "labels": labels[i]} for i in range(n)]


def build_bert(seed: int):
    import transformers as tr

    torch.manual_seed(seed)
    config = tr.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=LENGTH, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return tr.BertForSequenceClassification(config)


def with_lora(model, seed: int):
    import peft

    torch.manual_seed(seed)  # the adapters' own init (A random, B = 0: the start is the base model)
    config = peft.LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["query", "value"],
        lora_dropout=0.0,
        modules_to_save=["classifier"],
    )
    return peft.get_peft_model(model, config)


@torch.no_grad()
def logits_of(model, data: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    ids = torch.stack([d["input_ids"] for d in data])
    labels = torch.stack([d["labels"] for d in data])
    return model(input_ids=ids).logits.float(), labels


def train(model, data, steps: int, lr: float, out: Path, seed: int) -> list[dict]:
    import transformers as tr

    tr.logging.set_verbosity_error()
    args = tr.TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=32, max_steps=steps, learning_rate=lr,
        warmup_steps=max(1, steps // 10), lr_scheduler_type="cosine", weight_decay=0.0, report_to=[],
        save_strategy="no", logging_steps=max(1, steps // 5), use_cpu=True, seed=seed, disable_tqdm=False,
    )  # fmt: skip
    trainer = tr.Trainer(model=model, args=args, train_dataset=data)  # unmodified
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]


def along_alpha(sub: sp.Subspace, test, alphas: list[float]) -> tuple[list[dict], dict]:
    rows, logits = [], {}
    labels = None
    for a in alphas:
        with sub.at(a):
            logits[a], labels = logits_of(sub.model, test)
        rows.append({"alpha": a, **classification_metrics(logits[a], labels)})
    ensemble = classification_metrics(logits[alphas[0]] + logits[alphas[-1]], labels)
    return rows, ensemble


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--lora", action="store_true", help="a line of LoRA adapters on a frozen base (+ plain LoRA)"
    )
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (each method gets the same)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3, LoRA 5e-3)")
    p.add_argument("--beta", type=float, default=1.0, help="weight of the cos² regulariser")
    p.add_argument("--train-size", type=int, default=2048, help="training sequences")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the model and the points")
    p.add_argument("--out", type=Path, default=Path("runs/hf_line"), help="output folder")
    a = p.parse_args(argv)
    lr = a.lr or (5e-3 if a.lora else 1e-3)
    train_set, test_set = make_task(a.train_size, a.seed), make_task(512, a.seed + 1)

    if a.lora:
        base = build_bert(a.seed)
        model = with_lora(copy.deepcopy(base), a.seed)
        other_end = with_lora(copy.deepcopy(base), a.seed + 1)  # vertex 1: the same base, its own adapters
        sub = sp.line(model, init=sp.FromModels([None, other_end]), seed=a.seed)
        stored = sum(p.numel() for p in model.parameters())
        print(f"line of LoRA adapters: {len(sub.tensor_names)} adapter tensors × 2 vertices; "
              f"{stored:,} parameters stored (the base once)")  # fmt: skip
    else:
        model = build_bert(a.seed)
        sub = sp.line(model, seed=a.seed)
    sub.autosample(a.beta, seed=a.seed)
    history = train(model, train_set, a.steps, lr, a.out, a.seed)
    alphas = [round(0.1 * i, 1) for i in range(11)]
    rows, ensemble = along_alpha(sub, test_set, alphas)
    summary: dict = {
        "mode": "lora" if a.lora else "full",
        "steps": a.steps,
        "lr": lr,
        "beta": a.beta,
        "ends": {"alpha=0": rows[0], "alpha=1": rows[-1]},
        "midpoint": rows[5],
        "ensemble of the ends": ensemble,
        "train_loss_history": history,
    }
    if a.lora:  # the baseline: one plain LoRA, same base, same steps and learning rate
        plain = with_lora(build_bert(a.seed), a.seed)
        train(plain, train_set, a.steps, lr, a.out / "plain", a.seed)
        summary["plain LoRA"] = classification_metrics(*logits_of(plain, test_set))

    a.out.mkdir(parents=True, exist_ok=True)
    midpoint = sub.export(0.5)
    midpoint.save_pretrained(a.out / "midpoint")
    write_json(a.out / "summary.json", summary)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(a.out / "along_alpha.csv", buf.getvalue())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(alphas, [r["acc"] for r in rows], marker="o", label="point on the line")
    ax.axhline(ensemble["acc"], ls="--", color="k", label="ensemble of the ends")
    if "plain LoRA" in summary:
        ax.axhline(summary["plain LoRA"]["acc"], ls=":", color="C3", label="plain LoRA")
    ax.set(xlabel="α", ylabel="test accuracy", title=f"BERT line ({summary['mode']})")
    ax.legend()
    save_figure(fig, a.out / "along_alpha.png")

    table = [
        ("α = 0", rows[0]),
        ("α = 0.5", rows[5]),
        ("α = 1", rows[-1]),
        ("ensemble of the ends", ensemble),
    ]
    if "plain LoRA" in summary:
        table.append(("plain LoRA", summary["plain LoRA"]))
    print("| point | acc | NLL | ECE |\n|---|---|---|---|")
    for name, m in table:
        print(f"| {name} | {m['acc']:.4f} | {m['nll']:.4f} | {m['ece']:.4f} |")
    return summary


if __name__ == "__main__":
    main()
