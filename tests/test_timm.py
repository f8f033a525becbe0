"""timm models of many families wrap, train and export (built with pretrained=False)."""

from __future__ import annotations

import pytest
import torch

import subspace_param as sp

timm = pytest.importorskip("timm")

# name: create_model options. CNNs, weight-standardised convs (NF-ResNet), attention (ViT, DeiT,
# CaiT), hybrids (MobileViT, CoAtNet), reparametrisable blocks (RepVGG), ghost and DLA trees.
ARCHS = {
    "resnet10t": {},
    "nf_resnet26": {},
    "convnext_atto": {},
    "efficientnet_b0": {},
    "mobilenetv3_small_050": {},
    "regnetx_002": {},
    "vit_tiny_patch16_224": {"img_size": 32, "patch_size": 8},
    "cait_xxs24_224": {"img_size": 32, "patch_size": 8},
    "mobilevit_xxs": {"img_size": 64},
    "coatnet_nano_rw_224": {"img_size": 64},
    "repvgg_a0": {},
    "dla34": {},
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_timm_line_trains_and_exports(arch: str) -> None:
    options = ARCHS[arch]
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=5, **options).eval()
    size = options.get("img_size", 32)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    assert sp.check_model(model).ok
    sub = sp.line(model, seed=0)
    sub.set_point(0.3)
    out = model(x)
    plain = sub.export(0.3)
    assert type(plain) is type(timm.create_model(arch, pretrained=False, num_classes=5, **options))
    torch.testing.assert_close(plain(x), out, rtol=0, atol=0)
    sub.set_point(0.8)
    assert float((model(x) - out).detach().abs().max()) > 0
    model(x).sum().backward()
    assert all(v.grad is not None for row in sub.vertices() for v in row)
