"""Permutation alignment of any traceable network (``sp.align``): the spec derived by torch.fx,
weight / OT / activation matching, function preservation on a zoo, and a lower barrier."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import subspace_param as sp
from subspace_param.connectivity import alignment, permutation_spec
from subspace_param.connectivity.rebasin import _apply, _tensors
from subspace_param.models import CIFARResNet


def _randomise_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight, 1.0, 0.2)
            nn.init.normal_(m.bias, 0.0, 0.2)
    return model.eval()


def _hidden_permutation(model: nn.Module, example: torch.Tensor, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every free channel group shuffled (the same function)."""
    spec = permutation_spec(model, example)
    g = torch.Generator().manual_seed(seed)
    perms = {
        i: torch.randperm(grp.size, generator=g) for i, grp in enumerate(spec.groups) if grp.free and grp.axes
    }
    shuffled = copy.deepcopy(model)
    new = _apply(_tensors(model), spec, perms)
    with torch.no_grad():
        for name, t in _tensors(shuffled).items():
            t.copy_(new[name])
    return shuffled


def _resnet(width: int = 8) -> nn.Module:
    return CIFARResNet(10, in_channels=1, width=width, blocks=1)


def _vgg() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 10, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(10 * 4 * 4, 12), nn.ReLU(),
        nn.Linear(12, 5),
    )  # fmt: skip


def _vit() -> nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=12, mlp_dim=20, num_classes=4
    ).eval()


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(7, 13), nn.ReLU(), nn.Linear(13, 11), nn.Tanh(), nn.Linear(11, 3))


CASES = {
    "mlp": (_mlp, (5, 7)),
    "vgg": (_vgg, (3, 3, 8, 8)),
    "resnet_bn": (lambda: _randomise_bn(_resnet()), (3, 1, 9, 9)),
    "vit_block": (_vit, (2, 3, 16, 16)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_hidden_permutation_is_recovered_exactly(case):
    torch.manual_seed(0)
    factory, shape = CASES[case]
    a = factory().eval()
    x = torch.randn(*shape)
    b = _hidden_permutation(a, x, seed=1)
    assert any((pa != pb).any() for pa, pb in zip(a.parameters(), b.parameters()))
    result = alignment(a, b, example=x)
    for (name, ta), tb in zip(_tensors(a).items(), _tensors(result.model).values()):
        torch.testing.assert_close(tb, ta, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(result.model(x), b(x), rtol=1e-5, atol=1e-5)
    assert any(row["moved"] > 0 for row in result.report)


def test_the_report_names_what_stays_fixed_and_why():
    x = torch.randn(2, 3, 16, 16)
    spec = permutation_spec(_vit(), x)
    reasons = [r for row in spec.report() for r in row["reasons"]]
    assert any("attention heads are left in place" in r for r in reasons)
    assert any("the model's input" in r for r in reasons) and any("the model's output" in r for r in reasons)
    free = [row for row in spec.report() if row["permuted"]]
    assert any(any("class_token" in a for a in row["axes"]) for row in free)  # the residual stream


@pytest.mark.parametrize("method", ["ot", "activations"])
def test_ot_and_activation_matching_recover_an_mlp(method):
    torch.manual_seed(2)
    factory, shape = CASES["mlp"]
    a = factory().eval()
    b = _hidden_permutation(a, torch.randn(*shape), seed=3)
    data = [torch.randn(64, 7) for _ in range(3)]
    aligned = sp.align(a, b, method=method, data=data)
    for pa, pb in zip(a.parameters(), aligned.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=0)


ZOO = ["resnet18", "mobilenet_v3_small", "regnet_x_400mf", "densenet121"]


@pytest.mark.parametrize("name", ZOO)
def test_function_is_preserved_on_torchvision_classifiers(name):
    torch.manual_seed(0)
    a = _randomise_bn(getattr(torchvision.models, name)(num_classes=10))
    b = _randomise_bn(getattr(torchvision.models, name)(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    result = alignment(a, b, example=x, max_iter=1)
    assert result.spec.free_groups, f"{name}: nothing could be permuted"
    moved = sum(row["moved"] for row in result.report)
    assert moved > 0
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), b(x), rtol=1e-5, atol=1e-5)


def test_timm_model_function_is_preserved():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    a = _randomise_bn(timm.create_model("resnet10t", pretrained=False, num_classes=5))
    b = _randomise_bn(timm.create_model("resnet10t", pretrained=False, num_classes=5))
    x = torch.randn(2, 3, 32, 32)
    result = alignment(a, b, example=x, max_iter=1)
    assert result.spec.free_groups
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), b(x), rtol=1e-5, atol=1e-5)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def test_alignment_lowers_the_barrier_between_two_trained_resnets():
    from sklearn.datasets import load_digits

    from subspace_param.batchnorm import reestimate_bn
    from subspace_param.connectivity import LinearPath

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(digits.target)
    torch.manual_seed(10)
    a = _train(_resnet(8).train(), x, y, seed=1)
    torch.manual_seed(20)
    b = _train(_resnet(8).train(), x, y, seed=2)
    aligned = sp.align(a, b, example=x[:4])

    def midpoint_loss(other: nn.Module) -> float:
        path = LinearPath(a, other)
        model = copy.deepcopy(a)
        path.load_into(model, 0.5)
        reestimate_bn(model, [(x[i : i + 256], y[i : i + 256]) for i in range(0, len(x), 256)])
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model.eval()(x), y))

    naive, after = midpoint_loss(b), midpoint_loss(aligned)
    assert after < naive, (naive, after)


def test_bad_inputs_are_named():
    a, b = (
        CASES["mlp"][0](),
        nn.Sequential(nn.Linear(7, 14), nn.ReLU(), nn.Linear(14, 11), nn.Tanh(), nn.Linear(11, 3)),
    )
    with pytest.raises(ValueError, match="differ in parameters or shapes"):
        sp.align(a, b)
    with pytest.raises(ValueError, match="needs data"):
        sp.align(a, a, method="activations")
    with pytest.raises(ValueError, match="method must be"):
        sp.align(a, a, method="bogus")
    with pytest.raises(ValueError, match="pass example="):
        sp.align(_vgg(), _vgg())


def _two_trained_mlps():
    from subspace_param.data import load_digits
    from subspace_param.models import mlp
    from subspace_param.training import TrainConfig, train

    data = load_digits()
    loader, train_eval, _ = data.loaders(64)
    nets = []
    for s in (0, 1):
        torch.manual_seed(s)
        nets.append(mlp(data.input_shape, data.num_classes, hidden=(48, 40)))
        train(nets[-1], loader, TrainConfig(epochs=6, lr=0.05, progress=False))
    return nets, train_eval


def test_repair_sets_each_channel_to_the_interpolated_statistics_and_keeps_the_ends():
    from subspace_param.connectivity import LinearPath, Repair
    from subspace_param.connectivity.repair import channel_statistics

    (a, b), loader = _two_trained_mlps()
    b = sp.align(a, b.eval(), example=next(iter(loader))[0][:8])
    rep = Repair(a, b, loader)
    assert [n for n, _ in rep.targets] == ["1", "3"]  # the hidden Linear layers, not the logits
    path = LinearPath(a, b)
    x = torch.cat([xb for xb, _ in loader])
    for t in (0.0, 0.37, 1.0):
        model = copy.deepcopy(a)
        path.load_into(model, t)
        rep.apply(model, t)
        got = channel_statistics(model, ["1", "3"], rep.batches)
        # reestimate_bn normalises later passes by the biased variance (one full batch in train mode)
        # and stores the unbiased one: a later layer's std is off by ≈ 1/(2N) = 4e-4 (N = 1347)
        for name, (mean, std) in rep.goal(t).items():
            torch.testing.assert_close(got[name][0], mean, rtol=1e-3, atol=1e-4)
            torch.testing.assert_close(got[name][1], std, rtol=1e-3, atol=1e-4)
        if t in (0.0, 1.0):  # at an end, the goal is the end's own statistics: its function is kept
            end = a if t == 0 else b
            torch.testing.assert_close(model.eval()(x), end.eval()(x), rtol=1e-3, atol=1e-3)


def test_repair_lowers_the_barrier_of_aligned_networks_and_targets_bn_outputs():
    from subspace_param.connectivity import LinearPath, Repair, evaluate_path
    from subspace_param.connectivity.repair import repair_targets

    (a, b), loader = _two_trained_mlps()
    b = sp.align(a, b.eval(), example=next(iter(loader))[0][:8])
    ts = np.linspace(0, 1, 5)
    plain = evaluate_path(LinearPath(a, b), loader, loader, ts, progress=False)
    repaired = evaluate_path(
        LinearPath(a, b), loader, loader, ts, progress=False, repair=Repair(a, b, loader)
    )
    assert repaired.barrier("train_loss") < plain.barrier("train_loss")
    assert abs(repaired.values["train_loss"][0] - plain.values["train_loss"][0]) < 1e-3
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Conv2d(4, 5, 3),
        torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(5 * 5 * 5, 3),
    )  # fmt: skip
    assert repair_targets(cnn.eval(), torch.randn(2, 3, 9, 9)) == [("1", 4), ("3", 4)]  # BN after conv 0
