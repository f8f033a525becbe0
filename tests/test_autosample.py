"""Unmodified training loops train a subspace (sub.autosample), checked against the manual loop in
float64: a plain loop, the Hugging Face Trainer, Lightning, DDP; and a loop that forgets is told."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import subspace_param as sp
from subspace_param.stale_point import REPEATS_BEFORE_WARNING, StalePointWarning


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Linear(9, 3)).double()


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(7, 5, dtype=torch.float64, generator=g), torch.randint(0, 3, (7,), generator=g))
        for _ in range(n)
    ]


def _vertex_grads(sub: sp.Subspace) -> list[torch.Tensor]:
    return [v.grad.clone() for v in sub.parameters()]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("geometry", ["line", "simplex"])
def test_a_plain_loop_under_autosample_equals_the_manual_loop(geometry: str, fused: bool) -> None:
    def wrap(net):
        return (
            sp.line(net, seed=1, fused=fused)
            if geometry == "line"
            else sp.simplex(net, 3, seed=1, fused=fused)
        )

    beta = 0.7
    auto_net, manual_net = _net(), _net()
    auto, manual = wrap(auto_net), wrap(manual_net)
    opt_a = torch.optim.SGD(auto_net.parameters(), lr=0.1)
    opt_m = torch.optim.SGD(manual_net.parameters(), lr=0.1)
    handle = auto.autosample(beta, seed=5)
    generator = torch.Generator().manual_seed(5)
    for x, y in _batches():
        opt_a.zero_grad()  # the user's loop, unchanged
        F.cross_entropy(auto_net(x), y).backward()
        opt_m.zero_grad()  # the manual loop: sample, then loss + β·cos² (same generator order)
        manual.sample(generator)
        (F.cross_entropy(manual_net(x), y) + manual.regularizer(beta, generator=generator)).backward()
        assert torch.equal(auto.point, manual.point)
        for a, m in zip(_vertex_grads(auto), _vertex_grads(manual)):
            torch.testing.assert_close(a, m, rtol=1e-12, atol=1e-14)
        opt_a.step()
        opt_m.step()
    assert handle.samples == 3 and handle.last_regularizer is not None
    # evaluation-mode forwards keep the point that was set
    auto.set_point(auto.center())
    auto_net.eval()(torch.randn(2, 5, dtype=torch.float64))
    torch.testing.assert_close(auto.point, auto.center().to(auto.point.dtype))
    handle.remove()
    auto_net.train()(torch.randn(2, 5, dtype=torch.float64))
    torch.testing.assert_close(auto.point, auto.center().to(auto.point.dtype))  # removed: no sampling


def test_regulariser_gradient_is_scaled_like_a_scaled_loss_and_rides_on_a_loss_entry() -> None:
    """loss/4 (gradient accumulation) gives the gradient of (loss + R)/4; a dict output with a
    ``loss`` entry carries R on that entry; the returned loss value excludes R."""

    class WithLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def forward(self, x, y):
            logits = self.net(x)
            return {"logits": logits, "loss": F.cross_entropy(logits, y)}

    auto_model, manual_model = WithLoss(), WithLoss()
    auto, manual = sp.line(auto_model, seed=2), sp.line(manual_model, seed=2)
    handle = auto.autosample(0.5, seed=9)
    generator = torch.Generator().manual_seed(9)
    x, y = _batches(1)[0]
    out = auto_model(x, y)
    (out["loss"] / 4).backward()
    manual.sample(generator)
    task = manual_model(x, y)["loss"]
    ((task + manual.regularizer(0.5, generator=generator)) / 4).backward()
    torch.testing.assert_close(out["loss"], task, rtol=0, atol=0)  # the reported loss excludes R
    for a, m in zip(_vertex_grads(auto), _vertex_grads(manual)):
        torch.testing.assert_close(a, m, rtol=1e-12, atol=1e-14)
    handle.remove()


def test_export_and_deepcopy_with_autosample_on() -> None:
    net = _net()
    sub = sp.line(net, seed=3)
    with sub.autosample(1.0, seed=0):
        plain = sub.export(0.4)
        assert not plain._forward_pre_hooks and not plain._forward_hooks
        with pytest.raises(RuntimeError, match="already has autosample hooks"):
            sub.autosample(1.0)
    assert not any("AutoSample" in repr(h) for h in net._forward_pre_hooks.values())


def test_a_loop_that_forgets_to_sample_is_told_once() -> None:
    net = _net()
    sp.line(net, seed=4)
    x, y = _batches(1)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(REPEATS_BEFORE_WARNING + 5):
            F.cross_entropy(net(x), y).backward()
        with torch.no_grad():  # BN re-estimation / evaluation-style forwards do not count
            net(x)
    stale = [w for w in caught if issubclass(w.category, StalePointWarning)]
    assert len(stale) == 1
    assert "sub.sample() before each step" in str(stale[0].message) and "autosample" in str(stale[0].message)
    quiet = _net()
    sub = sp.line(quiet, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StalePointWarning)
        for _ in range(REPEATS_BEFORE_WARNING + 5):
            sub.sample()
            F.cross_entropy(quiet(x), y).backward()


# -- Hugging Face Trainer ------------------------------------------------------------------------
def _tiny_bert():
    tr = pytest.importorskip("transformers")
    tr.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = tr.BertConfig(
        vocab_size=41, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=16, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return tr, tr.BertForSequenceClassification(config)


def _examples(n: int = 8) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 41, (n, 6), generator=g)
    return [{"input_ids": ids[i], "labels": torch.tensor(int(ids[i, 0] % 2))} for i in range(n)]


def test_hf_trainer_trains_a_line_unmodified_with_the_manual_gradients(tmp_path) -> None:
    tr, model = _tiny_bert()
    sub = sp.line(model, seed=1)
    sub.autosample(0.8, seed=11)
    captured: dict[str, list[torch.Tensor]] = {}

    class Capture(tr.TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            captured.setdefault("grads", [v.grad.clone() for v in sub.parameters()])
            captured.setdefault("point", [sub.point.clone()])

    args = tr.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=1, max_grad_norm=0.0,
        learning_rate=1e-3, report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
        disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = tr.Trainer(model=model, args=args, train_dataset=_examples(), callbacks=[Capture()])
    trainer.train()
    # the manual loop at the same point, on the same batch (its order does not change the mean loss)
    _, reference = _tiny_bert()
    ref = sp.line(reference, seed=1)
    generator = torch.Generator().manual_seed(11)
    ref.sample(generator)
    assert torch.equal(ref.point, captured["point"][0])
    batch = {k: torch.stack([e[k] for e in _examples()]) for k in ("input_ids", "labels")}
    reference.train()
    (reference(**batch).loss + ref.regularizer(0.8, generator=generator)).backward()
    for a, m in zip(captured["grads"], _vertex_grads(ref)):
        torch.testing.assert_close(a, m, rtol=1e-4, atol=1e-6)


# -- Lightning -------------------------------------------------------------------------------------
def test_lightning_trains_a_line_unmodified_with_the_manual_gradients() -> None:
    pl = pytest.importorskip("lightning.pytorch")

    net = _net()
    sub = sp.line(net, seed=6)
    sub.autosample(0.3, seed=21)
    captured: list[torch.Tensor] = []

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def on_before_optimizer_step(self, optimizer) -> None:
            if not captured:
                captured.extend(v.grad.clone() for v in sub.parameters())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = _batches(1)[0]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    trainer = pl.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Module(), loader)
    reference = _net()
    ref = sp.line(reference, seed=6)
    generator = torch.Generator().manual_seed(21)
    ref.sample(generator)
    (F.cross_entropy(reference(x), y) + ref.regularizer(0.3, generator=generator)).backward()
    for a, m in zip(captured, _vertex_grads(ref)):
        torch.testing.assert_close(a, m, rtol=1e-12, atol=1e-14)


# -- DDP: every rank draws the same point -----------------------------------------------------------
_DDP = """
import json, sys, torch, torch.distributed as dist
from torch import nn
import subspace_param as sp
dist.init_process_group("gloo")
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
sub = sp.line(net, seed=0)
sub.generator.manual_seed(1000 + dist.get_rank())  # different local generators: the seed must be shared
sub.autosample(1.0)
ddp = nn.parallel.DistributedDataParallel(net)
points = []
for _ in range(3):
    ddp(torch.randn(5, 4)).sum().backward()
    points.append(sub.point.tolist())
out = [None, None]
dist.all_gather_object(out, points)
if dist.get_rank() == 0:
    open(sys.argv[1], "w").write(json.dumps(out))
del ddp
dist.barrier()  # every rank's pending work is done before the group goes
dist.destroy_process_group()  # gloo's threads would otherwise abort at interpreter exit
"""


def test_ddp_ranks_draw_the_same_points(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "ddp.py").write_text(_DDP)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(tmp_path / "ddp.py"), str(tmp_path / "points.json")]  # fmt: skip
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rank0, rank1 = json.loads((tmp_path / "points.json").read_text())
    assert rank0 == rank1 and len({str(p) for p in rank0}) == 3
