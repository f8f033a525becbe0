"""Step-wise butterfly with optimal transport for VGG-style conv nets (Anokhin & Yarotsky's
``PointFinderStepWiseButterflyConvWBiasOT``), for any ``nn.Sequential`` of Conv2d / Linear weight
layers (with or without bias) joined by elementwise activations, pooling, Flatten and Dropout.

Neuron j of weight layer k is output channel (or unit) j. Stage k = ⌊t⌋, s = t − k moves the
butterfly vector [incoming kernel, bias, outgoing kernels in layer k + 1] of every neuron from
A's side [W̃_k[j], b_k^A[j], W_{k+1}^A[:, j]] to B's side [W_k^B[j], b_k^B[j], W̃_{k+1}[:, j]],
matched by exact OT once per stage; layers below k are B's, above k + 1 A's. W̃_k (k ≥ 1) is A's
layer k re-expressed on B's layer-(k − 1) features: the least-squares fit, over image patches
(``max_rows`` sampled positions over all images, the same for A and B), of A's pre-activation
(without bias) from B's inputs; W̃_{L−1} := W_{L−1}^B. Unlike the reference, the bias of layer k+1
also moves in the last stage (b_{L−1}: A → B), so the path ends at B — up to the permutation of
the last hidden layer's channels chosen by OT, i.e. exactly B's function. end_time = L − 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchitectureMismatchError
from .alignment import ot_permutation
from .mlp import fit_linear
from .paths import Path, State
from .rules import Rule, get_rule

GLUE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)


def weight_layers(model: nn.Module) -> list[tuple[int, nn.Conv2d | nn.Linear]]:
    """``[(index, layer)]`` of the Conv2d / Linear layers of a VGG-style ``nn.Sequential``."""
    if not isinstance(model, nn.Sequential):
        raise ArchitectureMismatchError(
            f"the conv butterfly needs an nn.Sequential, got {type(model).__name__}"
        )
    out = []
    for i, m in enumerate(model):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                raise ArchitectureMismatchError(f"module {i}: grouped convolutions are not supported")
            out.append((i, m))
        elif not isinstance(m, GLUE):
            raise ArchitectureMismatchError(
                f"module {i} ({type(m).__name__}) is not a Conv2d/Linear or a supported activation, pooling, "
                "Flatten or Dropout (BatchNorm nets: use the linear or fitted-curve paths)"
            )
    if len(out) < 2:
        raise ArchitectureMismatchError(f"at least two weight layers are needed, found {len(out)}")
    return out


def _incoming(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


def _outgoing(w_next: torch.Tensor, channels: int) -> torch.Tensor:
    """Rows j = what layer k+1 reads from channel j: conv kernels [:, j], or linear columns of the
    channel's flattened positions."""
    if w_next.ndim == 4:
        return w_next.transpose(0, 1).reshape(channels, -1)
    out, fan_in = w_next.shape
    return w_next.view(out, channels, fan_in // channels).transpose(0, 1).reshape(channels, -1)


def _from_outgoing(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    channels = rows.shape[0]
    if like.ndim == 4:
        return rows.reshape(channels, like.shape[0], *like.shape[2:]).transpose(0, 1).contiguous()
    out, fan_in = like.shape
    return rows.reshape(channels, out, fan_in // channels).transpose(0, 1).reshape(out, fan_in).contiguous()


@torch.no_grad()
def _layer_inputs(model: nn.Sequential, x: torch.Tensor, indices: list[int]) -> dict[int, torch.Tensor]:
    was = model.training
    model.eval()
    feats, h = {}, x
    for i, m in enumerate(model):
        if i in indices:
            feats[i] = h
        h = m(h)
    model.train(was)
    return feats


def _paired_rows(
    layer: nn.Conv2d | nn.Linear, ha: torch.Tensor, hb: torch.Tensor, max_rows: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's inputs in A and B as rows of its weight's fan-in — vectors (linear) or patches
    (conv, ordered like ``unfold``: channel, then kernel row, then kernel column) — at the same
    ``max_rows`` random (image, output position) samples in A and B, gathered directly (no im2col
    of whole feature maps)."""
    if isinstance(layer, nn.Linear):
        xa, xb = ha.reshape(len(ha), -1), hb.reshape(len(hb), -1)
        if len(xa) > max_rows:
            keep = torch.randperm(len(xa), generator=gen)[:max_rows]
            xa, xb = xa[keep], xb[keep]
        return xa, xb
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = layer.kernel_size, layer.stride, layer.dilation, layer.padding
    if isinstance(layer.padding, str):
        raise ArchitectureMismatchError(f"{layer}: string padding is not supported by the conv butterfly")
    n, c, h, w = ha.shape
    out_h, out_w = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    rows = min(max_rows, n * out_h * out_w)
    img = torch.randint(n, (rows,), generator=gen)
    oy = torch.randint(out_h, (rows,), generator=gen) * sh
    ox = torch.randint(out_w, (rows,), generator=gen) * sw
    ys = (oy[:, None] + dh * torch.arange(kh))[:, None, :, None]
    xs = (ox[:, None] + dw * torch.arange(kw))[:, None, None, :]
    ch = torch.arange(c)[None, :, None, None]

    def gather(hx: torch.Tensor) -> torch.Tensor:
        padded = F.pad(hx, (pw, pw, ph, ph))
        return padded[img[:, None, None, None], ch, ys, xs].reshape(rows, c * kh * kw)

    return gather(ha), gather(hb)


class ConvButterflyPath(Path):
    """See the module docstring. ``data``: inputs (e.g. training images) for the least-squares fits."""

    def __init__(
        self,
        model_a: nn.Sequential,
        model_b: nn.Sequential,
        data: torch.Tensor,
        rule: str | Rule = "lin",
        pairing: str = "ot",
        ridge: float = 0.0,
        max_rows: int = 20_000,
        seed: int = 0,
    ) -> None:
        la, lb = weight_layers(model_a), weight_layers(model_b)
        for (i, a), (j, b) in zip(la, lb):
            if (
                i != j
                or type(a) is not type(b)
                or a.weight.shape != b.weight.shape
                or (a.bias is None) != (b.bias is None)
            ):
                raise ArchitectureMismatchError(f"weight layer {i}: {a} in A vs {b} in B")
        if len(la) != len(lb):
            raise ArchitectureMismatchError(f"A has {len(la)} weight layers, B {len(lb)}")
        if pairing not in ("index", "ot"):
            raise ValueError(f"pairing must be 'index' or 'ot', got {pairing!r}")
        super().__init__(model_a)
        self.rule, self.pairing = get_rule(rule), pairing
        self.idx = [i for i, _ in la]
        self.layers = [m for _, m in la]
        self.wa = [m.weight.detach().clone() for _, m in la]
        self.wb = [m.weight.detach().clone() for _, m in lb]
        self.ba = [None if m.bias is None else m.bias.detach().clone() for _, m in la]
        self.bb = [None if m.bias is None else m.bias.detach().clone() for _, m in lb]
        fa = _layer_inputs(model_a, data, self.idx)
        fb = _layer_inputs(model_b, data, self.idx)
        gen = torch.Generator().manual_seed(seed)
        self.w_adj = [self.wa[0]]
        for k in range(1, len(self.layers)):
            xa, xb = _paired_rows(self.layers[k], fa[self.idx[k]], fb[self.idx[k]], max_rows, gen)
            target = xa @ _incoming(self.wa[k]).T
            self.w_adj.append(fit_linear(xb, target, ridge).reshape(self.wa[k].shape))
        self.w_adj[-1] = self.wb[-1]  # the list is closed with B's last layer
        self._stages: dict[int, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}

    @property
    def end_time(self) -> float:  # type: ignore[override]
        return float(len(self.layers) - 1)

    def _vectors(self, k: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        if k not in self._stages:
            c = self.wa[k].shape[0]
            parts_a = [_incoming(self.w_adj[k])]
            parts_b = [_incoming(self.wb[k])]
            if self.ba[k] is not None:
                parts_a.append(self.ba[k][:, None])
                parts_b.append(self.bb[k][:, None])
            parts_a.append(_outgoing(self.wa[k + 1], c))
            parts_b.append(_outgoing(self.w_adj[k + 1], c))
            za, zb = torch.cat(parts_a, 1), torch.cat(parts_b, 1)
            if self.pairing == "ot":
                zb = zb[ot_permutation(za, zb)]
            sizes = [p.shape[1] for p in parts_a]
            self._stages[k] = (za, zb, sizes)
        return self._stages[k]

    def state_at(self, t: float) -> State:
        t = self._check_t(t)
        last = len(self.layers) - 1
        k = min(int(t), last - 1)
        s = t - k
        za, zb, sizes = self._vectors(k)
        pieces = torch.split(self.rule(za, zb, s), sizes, dim=1)
        weights = [
            *self.wb[:k],
            pieces[0].reshape(self.wa[k].shape),
            _from_outgoing(pieces[-1], self.wa[k + 1]),
            *self.wa[k + 2 :],
        ]
        biases = [*self.bb[:k], pieces[1].reshape(-1) if self.ba[k] is not None else None, *self.ba[k + 1 :]]
        if k + 1 == last and self.ba[last] is not None:  # the last bias moves too: the path ends at B
            biases[last] = self.rule(self.ba[last], self.bb[last], s)
        state = {f"{i}.weight": w for i, w in zip(self.idx, weights)}
        state.update({f"{i}.bias": b for i, b in zip(self.idx, biases) if b is not None})
        return state
