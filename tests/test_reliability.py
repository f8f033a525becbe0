"""Runs that never lie: no code from files, divergence stops a run, one writer per run directory,
errors that name the file, DDP that fails instead of hanging. Every fault test is bounded in time."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import subspace_param as sp
from subspace_param.errors import FileReadError, NonFiniteError, RunDirectoryError
from subspace_param.experiments import runs
from subspace_param.experiments.rundir import claim_run_directory
from subspace_param.experiments.runs import RunConfig, train_run
from subspace_param.models import build_model
from subspace_param.training import TrainConfig, train

TINY = RunConfig(dataset="digits", model="mlp1", kind="line", epochs=3, batch_size=256, seed=0)
CLI = [sys.executable, "-m", "subspace_param.cli"]
TINY_ARGS = ["--dataset", "digits", "--model", "mlp1", "--batch-size", "256", "--no-progress"]


class Payload:
    """A pickled object whose unpickling would create ``marker`` (what an attacker would plant)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path, wrap=lambda p: {"model": p}) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wrap(Payload(marker)), path)
    return path


def _cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **kw.pop("env", {})}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, **kw)


def _last_line(err: str) -> str:
    return [line for line in err.strip().splitlines() if line.strip()][-1]


def _noise(n: int, seed: int) -> bytes:
    """Deterministic random bytes that do not start like a zip archive (``PK``)."""
    data = random.Random(seed).randbytes(n)
    assert not data.startswith(b"PK")
    return data


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "line"
    train_run(dataclasses_replace(TINY, epochs=1), out, progress=False)
    return out


def dataclasses_replace(cfg: RunConfig, **kw) -> RunConfig:
    import dataclasses

    return dataclasses.replace(cfg, **kw)


# -- 1. nothing executes from a file -----------------------------------------------------------------
def test_no_file_the_api_reads_runs_code(tmp_path) -> None:
    marker = tmp_path / "PWNED"
    net = nn.Sequential(nn.Linear(3, 4))
    cases = {
        "subspace file (sp.load)": lambda p: sp.load(p, net),
        "projection file (sp.load)": lambda p: sp.load(p, nn.Sequential(nn.Linear(3, 4))),
    }
    for what, read in cases.items():
        path = _plant(
            tmp_path / f"{len(what)}.pt", marker, wrap=lambda p: {"format": "subspace-param", "x": p}
        )
        with pytest.raises(FileReadError) as err:
            read(path)
        message = str(err.value)
        assert str(path) in message and "refused" in message and "posix.system" in message, what
        assert "weights_only" not in message, what
        assert len(message.splitlines()) == 1
    assert not marker.exists()


def test_no_file_the_cli_reads_runs_code(tmp_path, finished_run) -> None:
    marker = tmp_path / "PWNED"
    # --resume reads checkpoint.pt
    run = tmp_path / "resume"
    _plant(run / "checkpoint.pt", marker)
    out = _cli("train", "--kind", "line", *TINY_ARGS, "--out", str(run), "--epochs", "1", "--resume")
    assert out.returncode == 1 and "checkpoint.pt: refused to load" in _last_line(out.stderr), out.stderr
    # evaluate reads model.pt of a subspace run and of a standard run, swa.pt of an SWA run
    for kind, name in (("line", "model.pt"), ("standard", "model.pt"), ("standard", "swa.pt")):
        run = tmp_path / f"{kind}-{name}"
        run.mkdir()
        (run / "config.json").write_text(
            json.dumps({**TINY.as_json(), "kind": kind, "swa": name == "swa.pt"})
        )
        _plant(run / name, marker, wrap=lambda p: p)
        if name == "swa.pt":  # evaluate reads model.pt first: make it a valid one
            data = runs.load_data(TINY)
            torch.save(build_model("mlp1", data.input_shape, data.num_classes).state_dict(), run / "model.pt")
        out = _cli("evaluate", str(run))
        assert out.returncode == 1, out.stderr[-2000:]
        line = _last_line(out.stderr)
        assert f"{name}: refused to load" in line and "weights_only" not in out.stderr, line
    # plane reads curve.pt through sp.load
    conn = tmp_path / "connect"
    conn.mkdir()
    (conn / "connect.json").write_text(json.dumps({"run_a": str(finished_run), "run_b": str(finished_run)}))
    _plant(conn / "curve.pt", marker, wrap=lambda p: p)
    out = _cli("plane", str(conn), "--grid", "2")
    assert out.returncode == 1 and "curve.pt: refused to load" in _last_line(out.stderr), out.stderr[-2000:]
    assert not marker.exists()


# -- 4. errors that name the file and the fix ---------------------------------------------------------
def test_bad_files_give_one_line_naming_the_file(tmp_path, finished_run) -> None:
    good = finished_run / "model.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(_noise(700, 0))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    plain = tmp_path / "plain.pt"
    torch.save(nn.Linear(3, 4).state_dict(), plain)
    expected = {
        truncated: "truncated or corrupt",
        random_bytes: "not a PyTorch file",
        empty: "is empty",
        plain: "plain state_dict",
        tmp_path / "missing.pt": "no such file",
    }
    for path, what in expected.items():
        with pytest.raises(FileReadError) as err:
            sp.load(path, nn.Sequential(nn.Linear(3, 4)))
        message = str(err.value)
        assert message.startswith(f"{path}: ") and what in message, message
        assert len(message.splitlines()) == 1 and "weights_only=False" not in message


def test_resume_errors_name_the_checkpoint(tmp_path, finished_run) -> None:
    run = tmp_path / "r"
    train_run(dataclasses_replace(TINY, epochs=2), run, stop_after_epoch=1, progress=False)
    good = (run / "checkpoint.pt").read_bytes()
    cases = {
        good[: len(good) // 3]: "truncated or corrupt",
        _noise(1000, 1): "not a PyTorch file",
    }
    for data, what in cases.items():
        (run / "checkpoint.pt").write_bytes(data)
        with pytest.raises(FileReadError, match=what) as err:
            train_run(dataclasses_replace(TINY, epochs=2), run, resume=True, progress=False)
        assert str(run / "checkpoint.pt") in str(err.value)
    torch.save(nn.Linear(3, 3).state_dict(), run / "checkpoint.pt")
    with pytest.raises(FileReadError, match=r"not a subspace-param run checkpoint.*plain state_dict"):
        train_run(dataclasses_replace(TINY, epochs=2), run, resume=True, progress=False)
    (run / "checkpoint.pt").write_bytes(good)
    with pytest.raises(FileReadError, match=r"another config \(model: 'mlp1' there, 'mlp' here"):
        train_run(dataclasses_replace(TINY, epochs=2, model="mlp"), run, resume=True, progress=False)
    # a checkpoint from another architecture (no config inside, as an older file would be)
    other = tmp_path / "other"
    train_run(dataclasses_replace(TINY, epochs=2, model="mlp"), other, stop_after_epoch=1, progress=False)
    ck = torch.load(other / "checkpoint.pt", weights_only=True)
    del ck["config"]
    torch.save(ck, run / "checkpoint.pt")
    with pytest.raises(FileReadError, match="does not fit this run's model"):
        train_run(dataclasses_replace(TINY, epochs=2), run, resume=True, progress=False)
    with pytest.raises(RunDirectoryError, match="nothing to resume"):
        train_run(TINY, tmp_path / "empty", resume=True, progress=False)


def test_cli_errors_are_one_line(tmp_path) -> None:
    out = _cli("evaluate", str(tmp_path / "no-such-run"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    config = tmp_path / "no-such-run" / "config.json"
    assert out.stderr.strip() == (
        f"subspace-param evaluate: error: {config}: no such file: not a run "
        "directory (a `subspace-param train` run writes config.json)"
    )
    out = _cli(
        "train", "--kind", "line", *TINY_ARGS, "--epochs", "1", "--resume", "--out", str(tmp_path / "x")
    )
    assert out.returncode == 1 and "nothing to resume (no checkpoint.pt)" in out.stderr, out.stderr


# -- 2. a run that diverges fails loudly ----------------------------------------------------------------
class _NaNAt:
    """F-like namespace whose cross_entropy returns NaN on call number ``at`` (counted from 1)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def cross_entropy(self, *args, **kw):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(*args, **kw)
        return loss * float("nan") if self.calls == self.at else loss


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    steps_per_epoch = 1347 // 256  # digits: 1347 training samples, drop_last
    monkeypatch.setattr(runs, "F", _NaNAt(steps_per_epoch + 3))  # the 3rd step of epoch 2
    with pytest.raises(
        NonFiniteError, match=r"non-finite loss nan, gradient of .* at epoch 2, step 8 \(batch 3 of 5\)"
    ) as e:
        train_run(TINY, tmp_path / "nan", progress=False)
    assert "last good checkpoint" in str(e.value) and "epoch 1" in str(e.value)
    ck = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values())
    assert not (tmp_path / "nan" / "model.pt").exists() and not (tmp_path / "nan" / "summary.json").exists()


def test_on_nonfinite_skip_skips_and_counts(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runs, "F", _NaNAt(2))
    summary = train_run(TINY, tmp_path / "skip", progress=False, on_nonfinite="skip")
    assert [h["skipped"] for h in summary["history"]] == [1, 0, 0] and summary["skipped_steps"] == 1
    state = torch.load(tmp_path / "skip" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values())


def test_cli_divergence_exits_nonzero(tmp_path) -> None:
    out = _cli(
        "train", "--kind", "standard", *TINY_ARGS, "--epochs", "2", "--lr", "1e30", "--out", str(tmp_path)
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "non-finite" in _last_line(out.stderr) and "Lower --lr" in out.stderr
    assert not (tmp_path / "model.pt").exists()


def test_evaluate_exits_nonzero_on_nonfinite_metrics(tmp_path, finished_run) -> None:
    run = tmp_path / "nan-run"
    run.mkdir()
    for name in ("config.json", "model.pt"):
        (run / name).write_bytes((finished_run / name).read_bytes())
    payload = torch.load(run / "model.pt", weights_only=True)
    payload["state_dict"] = {
        k: torch.full_like(v, float("nan")) if "original1" in k else v
        for k, v in payload["state_dict"].items()
    }
    torch.save(payload, run / "model.pt")
    out = _cli("evaluate", str(run))
    assert out.returncode == 1 and "non-finite metrics" in _last_line(out.stderr), out.stderr[-2000:]


def test_api_loop_stops_before_the_step_and_subspace_check_names_tensors() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    sub = sp.line(net, seed=1)
    x = torch.randn(24, 5)
    x[13, 2] = float("nan")  # one poisoned sample in the second batch
    y = torch.randint(0, 3, (24,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=12)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = TrainConfig(epochs=1, progress=False, warmup_epochs=0)
    with pytest.raises(NonFiniteError, match=r"epoch 1, step 2 \(batch 2 of 2\)"):
        train(net, loader, cfg, subspace=sub)
    after = net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the first step was taken
    assert all(torch.isfinite(v).all() for v in after.values())  # the poisoned one was not
    history = train(net, loader, TrainConfig(epochs=1, progress=False, on_nonfinite="skip"), subspace=sub)
    assert history[0]["skipped"] == 1
    # the helper: after a NaN backward it names the vertex gradients at fault
    net.zero_grad()
    net(x[12:14]).sum().backward()
    with pytest.raises(NonFiniteError, match=r"gradient of 0.weight\[vertex 0\]") as e:
        sub.check_finite(where="my loop")
    assert "at my loop" in str(e.value)
    net.zero_grad()
    net(x[:12]).sum().backward()
    sub.check_finite(torch.tensor(1.0))  # healthy: no error


# -- 3. one writer per run directory ------------------------------------------------------------------
def test_a_second_writer_is_refused(tmp_path) -> None:
    out = tmp_path / "busy"
    with claim_run_directory(out):
        cli = _cli("train", "--kind", "line", *TINY_ARGS, "--epochs", "1", "--out", str(out))
        assert cli.returncode == 1
        assert f"is in use by another run (PID {os.getpid()} on {socket.gethostname()}" in cli.stderr
        with pytest.raises(RunDirectoryError, match="in use by another run"):
            train_run(TINY, out, progress=False)
    assert not (out / "config.json").exists()


def test_a_stale_lock_is_taken_over_with_a_notice(tmp_path) -> None:
    out = tmp_path / "stale"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    notices: list[str] = []
    with claim_run_directory(out, notify=notices.append):
        pass
    assert any(f"stale lock of PID {dead.pid}" in n for n in notices), notices
    assert any("removed 1 temporary file" in n for n in notices) and not list(out.glob(".*.tmp"))


def test_a_finished_run_is_not_overwritten_without_asking(tmp_path) -> None:
    out = tmp_path / "done"
    train_run(dataclasses_replace(TINY, epochs=1), out, progress=False)
    first = (out / "model.pt").read_bytes()
    with pytest.raises(RunDirectoryError, match=r"already holds a finished run .*--resume.*--overwrite"):
        train_run(dataclasses_replace(TINY, epochs=2), out, progress=False)
    assert (out / "model.pt").read_bytes() == first
    (out / "notes.txt").write_text("mine")
    train_run(dataclasses_replace(TINY, epochs=2), out, progress=False, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
    assert (out / "notes.txt").read_text() == "mine"  # overwrite removes only the run's own files


# -- 6. kill -9 during training and during a checkpoint write, then resume -----------------------------
_KILLER = """
import os, signal, sys
from pathlib import Path
import torch
from subspace_param.experiments import runs
from subspace_param.experiments.runs import RunConfig, train_run
from subspace_param.models import build_model

mode, at, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = RunConfig(dataset="digits", model="mlp1", kind="line", epochs=3, batch_size=256, seed=0)
if mode == "write":  # killed halfway through the at-th checkpoint write
    real, count = runs.atomic_write, [0]
    def atomic_write(path, write):
        if Path(path).name == "checkpoint.pt":
            count[0] += 1
            if count[0] == at:
                def half(f):
                    f.write(b"PK" + os.urandom(4096))
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(path, half)
        return real(path, write)
    runs.atomic_write = atomic_write
else:  # killed before the at-th optimizer step
    real_step, count = torch.optim.SGD.step, [0]
    def step(self, *a, **k):
        count[0] += 1
        if count[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_step(self, *a, **k)
    torch.optim.SGD.step = step
train_run(cfg, out, progress=False)
"""


@pytest.mark.parametrize(("mode", "at"), [("write", 2), ("step", 8)])
def test_kill_9_then_resume_is_bit_identical(tmp_path, mode, at) -> None:
    reference = tmp_path / "reference"
    train_run(TINY, reference, progress=False)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, mode, str(at), str(out)], env=env, timeout=300, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    if mode == "write":
        assert list(out.glob(".checkpoint.pt.*.tmp")), "the killed write should leave its temp file"
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1  # the last complete checkpoint survived the kill
    train_run(TINY, out, resume=True, progress=False)
    assert not list(out.glob(".*.tmp"))
    a = torch.load(reference / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert _states_equal(a, b)


# -- 5. DDP you can trust ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_STUCK = """
import os, signal, sys
from subspace_param.experiments.runs import RunConfig, init_distributed, train_run
cfg = RunConfig(dataset="digits", model="mlp1", kind="line", epochs=1, batch_size=64, seed=0)
if os.environ["RANK"] == "1":
    init_distributed(5.0)
    os.kill(os.getpid(), signal.SIGSTOP)  # a peer that hangs
train_run(cfg, sys.argv[1], progress=False, ddp_timeout=5.0)
"""


def test_a_stuck_peer_fails_the_run_within_the_timeout(tmp_path) -> None:
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _STUCK, str(tmp_path / "run")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        start = time.monotonic()
        _, err = procs[0].communicate(timeout=120)
        assert procs[0].returncode != 0
        assert time.monotonic() - start < 90, "rank 0 should fail after the 5 s timeout, not hang"
        assert "timed out" in err.lower() or "timeout" in err.lower(), err[-2000:]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)


_BN_DDP = """
import sys, torch, torch.distributed as dist
from torch import nn
import subspace_param as sp
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(6, 9), nn.BatchNorm1d(9), nn.ReLU(), nn.Linear(9, 3)).double()
sub = sp.line(net, seed=0)
sub.set_point(0.3)
x = torch.load(sys.argv[1], weights_only=True)
ddp = nn.parallel.DistributedDataParallel(net)
half = x.shape[0] // 2
ddp(x[rank * half:(rank + 1) * half]).square().mean().backward()
if rank == 0:
    torch.save({n: p.grad for n, p in net.named_parameters()}, sys.argv[2])
del ddp
dist.barrier()  # every rank's pending work is done before the group goes
dist.destroy_process_group()  # gloo's threads would otherwise abort at interpreter exit
"""


def test_ddp_with_batchnorm_normalises_per_rank(tmp_path) -> None:
    """2 processes × B with BatchNorm equal one process that averages the gradients of two
    B-sized halves (each normalised over itself), not one process with a 2B batch; README, DDP."""
    torch.manual_seed(5)
    x = torch.randn(26, 6, dtype=torch.float64)
    torch.save(x, tmp_path / "x.pt")
    (tmp_path / "bn.py").write_text(_BN_DDP)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(_free_port()),
        str(tmp_path / "bn.py"), str(tmp_path / "x.pt"), str(tmp_path / "grads.pt"),
    ]  # fmt: skip
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    ddp = torch.load(tmp_path / "grads.pt", weights_only=True)

    def grads(chunks: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 9), nn.BatchNorm1d(9), nn.ReLU(), nn.Linear(9, 3)).double()
        sub = sp.line(net, seed=0)
        sub.set_point(0.3)
        for c in chunks:
            (net(c).square().mean() / len(chunks)).backward()
        return {n: p.grad for n, p in net.named_parameters()}

    halves, whole = grads([x[:13], x[13:]]), grads([x])
    for name in ddp:
        torch.testing.assert_close(ddp[name], halves[name], rtol=1e-10, atol=1e-12, msg=name)
    assert max(float((ddp[n] - whole[n]).abs().max()) for n in ddp) > 1e-4


def test_dropped_samples_are_reported_once(tmp_path) -> None:
    out = _cli("train", "--kind", "standard", *TINY_ARGS, "--epochs", "2", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.count("are left out of each epoch") == 1
    assert "67 of 1347 training samples (5.0%)" in out.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["samples_dropped_per_epoch"] == 67


# -- smaller ------------------------------------------------------------------------------------------
def test_projection_refuses_dim_above_the_number_of_parameters() -> None:
    with pytest.raises(ValueError, match=r"dim=10,000,000 exceeds the 67 scalars of the 4 covered tensors"):
        sp.projection(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), dim=10**7)


def test_pickle_payload_would_have_run(tmp_path) -> None:
    """The planted payload is real: plain pickle (what weights_only=False would do) runs it."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
