"""The fused path under DDP and FSDP2, with 2 gloo processes on CPU.

* DDP: the fused backward is one node per bucket (about 25 MB of vertex gradients, formed from the
  last layer backwards), so DDP's all-reduce hooks fire while the earlier layers' backward still
  runs, not all at the end;
* FSDP2 (``fully_shard``): the vertices become DTensors gathered per module; the fused path steps
  aside with a recorded reason and the per-tensor path trains exactly like one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

import subspace_param as sp
from subspace_param.fused import fused_weights, make_buckets


def _run_two_ranks(tmp_path, script: str, *args: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "script.py").write_text(script)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(tmp_path / "script.py"), *args]  # fmt: skip
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_buckets_are_filled_from_the_last_tensor_and_capped():
    sizes = [10, 4_000_000, 5, 3_000_000, 3_000_000, 7]
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    buckets = make_buckets(sizes, offsets, vertex_bytes=8, cap_bytes=25 * 2**20)
    assert [(b.first, b.last) for b in buckets] == [(0, 1), (1, 2), (2, 4), (4, 6)]  # 32 MB: alone
    assert all(b.lo == offsets[b.first] and b.hi == offsets[b.last] for b in buckets)
    capped = make_buckets([1] * 70, list(range(71)), vertex_bytes=8, max_tensors=32)
    assert [(b.first, b.last) for b in capped] == [(0, 6), (6, 38), (38, 70)]


def test_one_backward_node_per_bucket_and_the_same_gradients():
    torch.manual_seed(0)
    layers = [nn.Linear(300, 300).double() for _ in range(4)]
    model, reference = (
        nn.Sequential(*layers),
        nn.Sequential(*[nn.Linear(300, 300).double() for _ in range(4)]),
    )
    reference.load_state_dict(model.state_dict())
    sub = sp.line(model, seed=0, fused=True)
    ref = sp.line(reference, seed=0, fused=False)
    fused = fused_weights(model)
    fused.bucket_bytes = 2 * (300 * 300 + 300) * 8  # one layer (both vertices) per bucket
    fused.build(model)
    assert len(fused.buckets) == 4
    x = torch.randn(3, 300, dtype=torch.float64)
    for s in (sub, ref):
        s.set_point(torch.tensor([0.3]))
    (model(x).square().sum() + sub.regularizer(0.5)).backward()  # first call: requests the Gram
    for p in sub.parameters():
        p.grad = None
    (model(x).square().sum() + sub.regularizer(0.5)).backward()
    (reference(x).square().sum() + ref.regularizer(0.5)).backward()
    for a, b in zip(sub.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


_DDP_OVERLAP = """
import json, sys, torch, torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
import subspace_param as sp
dist.init_process_group("gloo")
torch.manual_seed(0)
net = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(5)])  # 2 × 4 MiB of vertex gradients per layer
sub = sp.line(net, seed=0, fused=True)
from subspace_param.fused import fused_weights
fused = fused_weights(net)
fused.bucket_bytes = 9 * 2**20  # one layer per bucket
fused.build(net)
ddp = nn.parallel.DistributedDataParallel(net, bucket_cap_mb=5)
events = []

def hook(state, bucket):
    events.append("allreduce")
    return allreduce_hook(state, bucket)

ddp.register_comm_hook(None, hook)
x = torch.randn(4, 1024)
for step in range(3):
    events.clear()
    sub.sample()
    def mark(module, args, output):
        output.register_hook(lambda g: events.append("backward reaches layer 0"))

    handle = ddp.module[0].register_forward_hook(mark)
    loss = ddp(x).square().mean()
    handle.remove()
    loss.backward()
result = {"buckets": len(fused.buckets), "events": events}
if dist.get_rank() == 0:
    open(sys.argv[1], "w").write(json.dumps(result))
del ddp
dist.barrier()  # every rank's pending work is done before the group goes
dist.destroy_process_group()
"""


def test_ddp_all_reduces_buckets_while_the_backward_runs(tmp_path) -> None:
    _run_two_ranks(tmp_path, _DDP_OVERLAP, str(tmp_path / "out.json"))
    result = json.loads((tmp_path / "out.json").read_text())
    events = result["events"]
    assert result["buckets"] == 5
    marker = events.index("backward reaches layer 0")
    # at least one all-reduce was launched before the backward reached the first layer
    assert events[:marker].count("allreduce") >= 1, events
    assert events.count("allreduce") >= 2, events


_FSDP = """
import json, sys, torch, torch.distributed as dist
from torch import nn
import subspace_param as sp
from torch.distributed.fsdp import fully_shard
from torch.distributed.device_mesh import init_device_mesh
from subspace_param.fused import fused_weights
dist.init_process_group("gloo")
mesh = init_device_mesh("cpu", (2,))
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
sub = sp.line(net, seed=0)
fully_shard(net, mesh=mesh)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
r = dist.get_rank()
for step in range(3):
    sub.set_point(torch.tensor([0.2 + 0.3 * step]))
    opt.zero_grad()
    net(x[4 * r : 4 * (r + 1)]).square().mean().backward()
    opt.step()
state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).tolist()
         for k, v in net.state_dict().items()}
if r == 0:
    open(sys.argv[1], "w").write(json.dumps({"state": state, "reason": fused_weights(net).unsupported}))
dist.barrier()  # every rank's pending work is done before the group goes
dist.destroy_process_group()
"""


def test_fsdp2_fully_shard_trains_like_one_process_on_the_per_tensor_path(tmp_path) -> None:
    pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 needs torch.distributed")
    _run_two_ranks(tmp_path, _FSDP, str(tmp_path / "out.json"))
    result = json.loads((tmp_path / "out.json").read_text())
    assert "DTensor" in result["reason"] and "per-tensor" in result["reason"]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    sub = sp.line(net, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for step in range(3):
        sub.set_point(torch.tensor([0.2 + 0.3 * step]))
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
    for name, value in net.state_dict().items():
        torch.testing.assert_close(torch.tensor(result["state"][name], dtype=value.dtype), value, rtol=1e-10,
                                   atol=1e-12, msg=name)  # fmt: skip
