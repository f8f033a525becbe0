"""Training runs users launch (from Python, the CLI or torchrun): one config, one output folder.

A run trains a standard model (optionally with SWA or fast geometric ensembling snapshots), a
subspace (line, curve, chain, simplex; layerwise or not) or a random-projection subspace, with
the same recipe and budget accounting (epochs, optimizer steps, wall time). Every epoch it logs
metrics to ``history.csv``/``history.json`` and writes ``checkpoint.pt`` atomically; ``resume=True``
continues from it and gives the same weights as an uninterrupted run with the same seed (the
data order comes from a seeded :class:`~torch.utils.data.DistributedSampler` keyed by epoch; the
RNG states, optimizer state and subspace sampler are checkpointed).

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in ``DistributedDataParallel``; every
rank draws the same subspace point at each step (the point sampler has one shared seed), each
rank gets ``batch_size`` examples and the loss (task + β·cos²) is back-propagated once per step.
The process group gets a timeout (``ddp_timeout``, 5 minutes by default), so a stuck peer fails the
run instead of blocking it for gloo's 30 minutes. BatchNorm layers normalise over each rank's own
``batch_size`` examples unless ``sync_bn`` converts them to ``SyncBatchNorm`` (CUDA only).

A run never lies: it holds an exclusive lock on its directory and refuses to overwrite a run there
(:mod:`.rundir`); a NaN/inf loss or gradient stops it (or, with ``on_nonfinite="skip"``, skips the
step and counts it) with the last good checkpoint kept; every file is read with
``weights_only=True`` (:mod:`subspace_param.safe_load`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm.auto import tqdm

from .. import api
from ..batchnorm import reestimate_bn
from ..data import Dataset, load_dataset, with_label_noise
from ..errors import FileReadError, MissingFileError, NonFiniteError, RunDirectoryError
from ..finite import nonfinite_problems
from ..io import atomic_write, write_json, write_text
from ..models import build_model
from ..projections import projection
from ..safe_load import load_file
from ..subspace import Subspace
from ..training import lr_at, metrics, predict
from .rundir import claim_run_directory

Kind = Literal["standard", "line", "curve", "chain", "simplex", "projection"]
KINDS = ("standard", "line", "curve", "chain", "simplex", "projection")


@dataclasses.dataclass
class RunConfig:
    """Everything a run depends on (saved as ``config.json`` next to its results)."""

    dataset: str = "mnist1d"
    model: str = "cnn"
    kind: str = "standard"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    label_noise: float = 0.0
    # subspaces
    beta: float = 1.0
    num_samples: int = 1
    layerwise: bool = False
    bends: int = 1
    vertices: int = 3
    # random projections
    dim: int = 1000
    method: str = "auto"
    # baselines
    swa: bool = False
    swa_start: float = 0.75
    swa_lr: float = 0.01
    fge_cycle: int = 0
    fge_start: float = 0.8
    fge_lr: tuple[float, float] = (0.05, 0.0005)
    # landscapes: keep the parameters after every epoch (and at init) in trajectory/epoch_NNNN.pt
    trajectory: bool = False
    # distributed
    sync_bn: bool = False
    # data
    data_root: str = "data"
    download: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if (self.swa or self.fge_cycle) and self.kind != "standard":
            raise ValueError("swa / fge are baselines of standard training: use kind='standard'")
        if self.trajectory and self.kind != "standard":
            raise ValueError("trajectory checkpoints are kept for standard runs (kind='standard')")
        if self.fge_cycle % 2:
            raise ValueError(f"fge_cycle must be even (snapshots at mid-cycle), got {self.fge_cycle}")
        self.fge_lr = tuple(self.fge_lr)  # type: ignore[assignment]

    @classmethod
    def from_json(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(
                path, "no such file: not a run directory (a `subspace-param train` run writes config.json)"
            )
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FileReadError(path, f"is not a readable run config ({type(e).__name__}: {e})") from None
        if not isinstance(raw, dict):
            raise FileReadError(path, f"is not a run config (a JSON object), it holds a {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except (TypeError, ValueError) as e:
            raise FileReadError(path, f"is not a valid run config: {e}") from None

    def as_json(self) -> dict[str, Any]:
        """The config as ``config.json`` holds it (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


#: The papers' recipes, by name (``subspace-param train --recipe NAME``; options given explicitly
#: override them). ``wortsman2021``: Wortsman et al. 2021 (apple/learning-subspaces, CIFAR-10
#: cResNet20): SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, 160 epochs, 5 warm-up
#: epochs then cosine, β = 1, one point per batch (the reference steps the lr per epoch; this
#: library per iteration).
RECIPES: dict[str, dict[str, Any]] = {
    "wortsman2021": {
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "batch_size": 128,
        "epochs": 160,
        "warmup_epochs": 5.0,
        "beta": 1.0,
        "num_samples": 1,
    },
}


def apply_recipe(cfg: RunConfig, name: str, keep: set[str] = frozenset()) -> RunConfig:  # type: ignore[assignment]
    """``cfg`` with the fields of recipe ``name``, except those in ``keep`` (set explicitly)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return dataclasses.replace(cfg, **{k: v for k, v in RECIPES[name].items() if k not in keep})


def load_data(cfg: RunConfig) -> Dataset:
    data = load_dataset(cfg.dataset, root=cfg.data_root, download=cfg.download)
    return with_label_noise(data, cfg.label_noise, seed=0) if cfg.label_noise > 0 else data


def build(cfg: RunConfig, data: Dataset, *, sync_bn: bool = False) -> tuple[nn.Module, Subspace | None]:
    """The model of the run, wrapped as its kind asks (seeded by ``cfg.seed``). ``sync_bn``
    converts BatchNorm to SyncBatchNorm first (it must happen before wrapping)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    options = {"seed": cfg.seed, "layerwise": cfg.layerwise}
    if cfg.kind == "line":
        return model, api.line(model, **options)
    if cfg.kind == "curve":
        return model, api.curve(model, **options)
    if cfg.kind == "chain":
        return model, api.chain(model, bends=cfg.bends, **options)
    if cfg.kind == "simplex":
        return model, api.simplex(model, vertices=cfg.vertices, **options)
    if cfg.kind == "projection":
        projection(model, cfg.dim, method=cfg.method, seed=cfg.seed)
    return model, None


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


DEFAULT_DDP_TIMEOUT = 300.0


def init_distributed(timeout: float = DEFAULT_DDP_TIMEOUT) -> tuple[int, int]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl with CUDA). A
    collective that waits longer than ``timeout`` seconds for a peer fails instead of hanging."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if torch.cuda.is_available() else "gloo", timeout=datetime.timedelta(seconds=timeout)
        )
    return _world()


def _agree(rank: int, world: int, message: str | None) -> str | None:
    """Rank 0's ``message`` on every rank (so that all ranks fail together, none waits for a peer)."""
    if world == 1:
        return message
    box = [message if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "step", "history", "elapsed", "rng")


def read_checkpoint(path: Path, cfg: RunConfig, device: str) -> dict[str, Any]:
    """``checkpoint.pt`` of this run (``weights_only=True``), checked to be a run checkpoint of ``cfg``."""
    ck = load_file(path, "run checkpoint", map_location=device, hint="restart the run with --overwrite")
    if not isinstance(ck, dict) or any(k not in ck for k in CHECKPOINT_KEYS):
        kind = (
            "a plain state_dict"
            if isinstance(ck, dict) and ck and all(isinstance(v, torch.Tensor) for v in ck.values())
            else f"a {type(ck).__name__}"
        )
        raise FileReadError(
            path,
            f"is not a subspace-param run checkpoint (it holds {kind}, without the entries "
            f"{', '.join(CHECKPOINT_KEYS)}); restart the run with --overwrite",
        )
    saved = ck.get("config")
    if saved is not None and saved != cfg.as_json():
        diff = sorted(k for k in set(saved) | set(cfg.as_json()) if saved.get(k) != cfg.as_json().get(k))
        raise FileReadError(
            path,
            "was written by a run with another config ("
            + ", ".join(f"{k}: {saved.get(k)!r} there, {cfg.as_json().get(k)!r} here" for k in diff)
            + "); resume with the options of config.json",
        )
    return ck


def _csv(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def fge_lr(epoch_float: float, start_epoch: int, cycle: int, lr1: float, lr2: float) -> float:
    """Garipov et al.'s FGE cyclic schedule: τ = ((e − start) mod c)/c; lr1 → lr2 over the first
    half of a cycle, back up over the second."""
    tau = ((epoch_float - start_epoch) % cycle) / cycle
    return (1 - 2 * tau) * lr1 + 2 * tau * lr2 if tau < 0.5 else (2 * tau - 1) * lr1 + (2 - 2 * tau) * lr2


def train_run(
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    device: str | None = None,
    on_nonfinite: str = "stop",
    ddp_timeout: float = DEFAULT_DDP_TIMEOUT,
) -> dict[str, Any]:
    """Train the run described by ``cfg`` into ``out_dir`` and return its summary.

    Files: ``config.json``, ``history.{csv,json}``, ``checkpoint.pt`` (every epoch, atomic),
    ``model.pt`` (the final subspace via :func:`subspace_param.save`, or the model's state_dict),
    ``swa.pt`` / ``fge.pt`` for the baselines. ``stop_after_epoch`` ends early after
    checkpointing (to split a run into jobs); ``resume`` continues from the checkpoint;
    ``overwrite`` replaces a run already in ``out_dir`` (otherwise refused). A non-finite loss or
    gradient raises :class:`~subspace_param.errors.NonFiniteError` before the optimizer step,
    keeping the last epoch's checkpoint (``on_nonfinite="skip"``: the step is skipped and counted
    in the history's ``skipped``).
    """
    if on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
    out = Path(out_dir)
    rank, world = init_distributed(ddp_timeout)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and world > 1:
        device = f"cuda:{rank % torch.cuda.device_count()}"
    if cfg.sync_bn and not device.startswith("cuda"):
        raise ValueError(
            "sync_bn needs CUDA (PyTorch's SyncBatchNorm does not run on CPU); on CPU each rank's "
            "BatchNorm normalises over its own batch"
        )
    lock, refused = None, None
    if rank == 0:
        try:
            lock = claim_run_directory(out, resume=resume, overwrite=overwrite)
        except RunDirectoryError as e:
            refused = str(e)
    refused = _agree(rank, world, refused)
    if refused:
        raise RunDirectoryError(refused)
    try:
        return _train(cfg, out, rank, world, device, resume, stop_after_epoch, progress, on_nonfinite)
    finally:
        if lock is not None:
            lock.release()


def _train(
    cfg: RunConfig,
    out: Path,
    rank: int,
    world: int,
    device: str,
    resume: bool,
    stop_after_epoch: int | None,
    progress: bool,
    on_nonfinite: str,
) -> dict[str, Any]:
    data = load_data(cfg)
    model, sub = build(cfg, data, sync_bn=cfg.sync_bn and world > 1)
    if sub is not None and cfg.beta > 0:
        sub.expect_regularizer()  # the first step fuses the regulariser too: resumes are bit-identical
    model.to(device)
    if sub is not None:  # one seed for every rank: the same point everywhere
        sub.generator.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[int(device.split(":")[1])] if "cuda" in device else None
        )
    train_set = TensorDataset(data.x_train, data.y_train)
    sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch size {cfg.batch_size} × {world} process(es) exceeds the {len(train_set)} training samples"
        )
    dropped = len(train_set) - steps_per_epoch * cfg.batch_size * world
    if dropped and rank == 0 and not resume:
        print(
            f"[run] {dropped} of {len(train_set)} training samples ({100 * dropped / len(train_set):.1f}%) "
            f"are left out of each epoch: {world} process(es) × batch {cfg.batch_size} (drop_last); "
            "the sampler reshuffles every epoch, so a different subset is left out each time",
            file=sys.stderr,
        )
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    swa_model = torch.optim.swa_utils.AveragedModel(model) if cfg.swa else None
    swa_epoch = int(cfg.swa_start * cfg.epochs)
    fge_epoch = int(cfg.fge_start * cfg.epochs)
    fge_snapshots: list[dict[str, torch.Tensor]] = []
    history: list[dict[str, Any]] = []
    start_epoch, step, elapsed = 0, 0, 0.0

    ckpt_path = out / "checkpoint.pt"
    if resume:
        ck = read_checkpoint(ckpt_path, cfg, device)
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0][:300]
            raise FileReadError(
                ckpt_path,
                f"does not fit this run's model ({cfg.model}, kind {cfg.kind}): {first}; "
                "resume with the options of config.json, or restart with --overwrite",
            ) from None
        start_epoch, step, history, elapsed = ck["epoch"], ck["step"], ck["history"], ck["elapsed"]
        torch.set_rng_state(ck["rng"])
        if sub is not None:
            sub.generator.set_state(ck["point_rng"])
        if swa_model is not None and ck.get("swa") is not None:
            swa_model.load_state_dict(ck["swa"])
        fge_snapshots = ck.get("fge", [])
    elif rank == 0:
        write_json(out / "config.json", cfg.as_json())
        if cfg.trajectory:
            _save_trajectory_point(out, model, 0)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
        bar = tqdm(
            loader,
            desc=f"{cfg.kind} epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress or rank != 0,
            leave=False,
        )
        for i, (x, y) in enumerate(bar):
            x, y = x.to(device), y.to(device)
            if cfg.fge_cycle and epoch >= fge_epoch:
                lr = fge_lr(epoch + i / steps_per_epoch, fge_epoch, cfg.fge_cycle, *cfg.fge_lr)
            elif cfg.swa and epoch >= swa_epoch:
                lr = cfg.swa_lr
            else:
                lr = lr_at(step, total, warmup, cfg.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            task = torch.zeros((), device=device)
            step_correct = 0
            if sub is None:
                logits = net(x)
                task = F.cross_entropy(logits, y)
                step_correct += int((logits.argmax(1) == y).sum())
            else:
                for xc, yc in sub.iter_samples(x, y, num_samples=cfg.num_samples):
                    logits = net(xc)
                    task = task + F.cross_entropy(logits, yc) * (len(yc) / len(y))
                    step_correct += int((logits.argmax(1) == yc).sum())
            loss = task + sub.regularizer(cfg.beta) if sub is not None and cfg.beta > 0 else task
            loss.backward()  # one backward per step: DDP all-reduces task and regulariser gradients together
            step += 1
            problems = nonfinite_problems(loss, trainable)
            # under DDP the gradients are all-reduced, hence equal on every rank (a NaN loss anywhere
            # makes them NaN everywhere): deciding on them keeps the ranks together, no extra collective
            diverged = bool(problems) if world == 1 else any(q.startswith("gradient") for q in problems)
            if diverged:  # every rank skips or stops together
                where = f"epoch {epoch + 1}, step {step} (batch {i + 1} of {steps_per_epoch})"
                if on_nonfinite == "stop":
                    kept = (
                        f"the last good checkpoint ({ckpt_path}, epoch {epoch}) is kept"
                        if epoch > 0
                        else "no checkpoint was written (it diverged in the first epoch)"
                    )
                    what = ", ".join(problems) or "values on another rank"
                    raise NonFiniteError(
                        f"{out}: non-finite {what} at {where}: the run diverged; {kept}. Lower --lr, "
                        "or pass --on-nonfinite skip to skip such steps"
                    )
                skipped += 1
                opt.zero_grad(set_to_none=True)
                continue
            opt.step()
            loss_sum += float(task.detach()) * len(y)
            correct += step_correct
            seen += len(y)
        if swa_model is not None and epoch >= swa_epoch:
            swa_model.update_parameters(model)
        if (
            cfg.fge_cycle
            and epoch >= fge_epoch
            and (epoch - fge_epoch + 1) % cfg.fge_cycle == cfg.fge_cycle // 2
        ):
            fge_snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        elapsed += time.perf_counter() - t0
        history.append(
            {
                "epoch": epoch + 1,
                "step": step,
                "lr": lr,
                "train_loss": loss_sum / seen if seen else float("nan"),
                "train_acc": correct / seen if seen else float("nan"),
                "skipped": skipped,
                "seconds": elapsed,
            }
        )
        if rank == 0:
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "history": history,
                "elapsed": elapsed,
                "rng": torch.get_rng_state(),
                "point_rng": sub.generator.get_state() if sub is not None else None,
                "swa": swa_model.state_dict() if swa_model is not None else None,
                "fge": fge_snapshots,
                "config": cfg.as_json(),
            }
            atomic_write(ckpt_path, lambda f, state=state: torch.save(state, f))
            if cfg.trajectory:
                _save_trajectory_point(out, model, epoch + 1)
            write_text(out / "history.csv", _csv(history))
            write_json(out / "history.json", history)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
            return {"stopped_after_epoch": epoch + 1, "history": history}

    if rank == 0:
        _save_final(cfg, out, model, sub, swa_model, fge_snapshots, data)
    summary = {
        "epochs": cfg.epochs,
        "steps": step,
        "seconds": elapsed,
        "history": history,
        "world_size": world,
        "samples_per_epoch": steps_per_epoch * cfg.batch_size * world,
        "samples_dropped_per_epoch": dropped,
        "skipped_steps": sum(int(h.get("skipped", 0)) for h in history),
    }
    if rank == 0:
        write_json(out / "summary.json", summary)
    return summary


def _save_trajectory_point(out: Path, model: nn.Module, epoch: int) -> None:
    """``trajectory/epoch_NNNN.pt``: the parameters after ``epoch`` epochs (0: the initial point)."""
    params = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
    atomic_write(out / "trajectory" / f"epoch_{epoch:04d}.pt", lambda f: torch.save(params, f))


def trajectory_files(run_dir: str | Path) -> list[Path]:
    """The trajectory checkpoints of a run trained with ``trajectory=True``, in epoch order."""
    files = sorted((Path(run_dir) / "trajectory").glob("epoch_*.pt"))
    if not files:
        raise MissingFileError(
            Path(run_dir) / "trajectory",
            "no trajectory checkpoints: train the run with --save-trajectory (RunConfig.trajectory=True)",
        )
    return files


def _save_final(cfg, out, model, sub, swa_model, fge_snapshots, data) -> None:
    from ..projections import get_projection
    from ..serialization import save

    if sub is not None:
        save(sub, out / "model.pt")
    elif cfg.kind == "projection":
        save(get_projection(model), out / "model.pt")
    else:
        atomic_write(out / "model.pt", lambda f: torch.save(model.state_dict(), f))
    if swa_model is not None:
        bn_loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=cfg.batch_size)
        swa_net = swa_model.module
        reestimate_bn(swa_net, ((x, y) for x, y in bn_loader), device=next(swa_net.parameters()).device)
        atomic_write(out / "swa.pt", lambda f: torch.save(swa_net.state_dict(), f))
    if fge_snapshots:
        atomic_write(out / "fge.pt", lambda f: torch.save(fge_snapshots, f))


def load_run(
    run_dir: str | Path, which: str = "model"
) -> tuple[RunConfig, nn.Module, Subspace | None, Dataset]:
    """Rebuild a finished run: (config, model, subspace handle or None, data). ``which``:
    ``model`` (the trained model or subspace), ``swa`` (the averaged model)."""
    from ..serialization import load

    run_dir = Path(run_dir)
    cfg = RunConfig.from_json(run_dir / "config.json")
    data = load_data(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    if which not in ("model", "swa"):
        raise ValueError(f"which must be 'model' or 'swa', got {which!r}")
    if which == "swa" or cfg.kind == "standard":
        path = run_dir / f"{which}.pt"
        state = load_file(path, f"{which} state_dict", hint="the run has not finished: resume it")
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            first = str(e).strip().splitlines()[0][:300]
            raise FileReadError(path, f"does not fit the run's model ({cfg.model}): {first}") from None
        return cfg, model, None, data
    if not (run_dir / "model.pt").exists():
        raise MissingFileError(run_dir / "model.pt", "no such file: the run has not finished (resume it)")
    handle = load(run_dir / "model.pt", model)
    return cfg, model, handle if isinstance(handle, Subspace) else None, data


@torch.no_grad()
def logits_at(
    model: nn.Module,
    data: Dataset,
    sub: Subspace | None = None,
    point: Any = None,
    batch_size: int = 1000,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Test logits at ``point`` (subspaces) with BatchNorm re-estimated there over the training set."""
    train_eval = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch_size)
    test = DataLoader(TensorDataset(data.x_test, data.y_test), batch_size=batch_size)
    model.to(device)
    if sub is not None and point is not None:
        sub.set_point(point)
    reestimate_bn(model, train_eval, device=device)
    return predict(model, test, device)


def evaluate_points(
    model: nn.Module,
    data: Dataset,
    sub: Subspace | None,
    points: dict[str, Any],
    ensembles: dict[str, list[str]] | None = None,
    device: str = "cpu",
) -> dict[str, dict[str, float]]:
    """Accuracy/NLL/ECE at named points (BN re-estimated at each) and of named ensembles of them
    (summed logits). For a standard model pass ``points={"model": None}``."""
    logits: dict[str, torch.Tensor] = {}
    labels = None
    for name, p in points.items():
        logits[name], labels = logits_at(model, data, sub, p, device=device)
    out = {name: metrics(l, labels) for name, l in logits.items()}
    for name, members in (ensembles or {}).items():
        out[name] = metrics(sum(logits[m] for m in members), labels)
    return out
