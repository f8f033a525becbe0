"""Paths between two networks that need no training: each gives the network at any t ∈ [0, end_time]
(A at t = 0, B — or B with its hidden neurons permuted, the same function, for OT pairings — at
``end_time``).

* :class:`LinearPath` — (1 − t)·A + t·B for any two models (t outside [0, 1] allowed);
* :class:`SubspacePath` — a trained subspace (a fitted curve from :func:`connect`) as a path;
* :class:`SimultaneousPath` — every tensor by a rule (``lin``/``arc``) at once, any architecture;
* :class:`NeuronPath` — one-hidden-layer nets, neurons [w_i, b_i, v_i] by a rule, index or OT pairing;
* :class:`WeightAdjustedPath` — one-hidden-layer nets with least-squares weight adjustment (end_time 2);
* :class:`ButterflyPath` — deep bias-free MLPs, step-wise butterfly (end_time L − 1), index or OT;
* :class:`StepwiseAdjustedPath` — deep bias-free MLPs, step-wise weight adjustment (end_time L).

Least-squares fits are computed once per stage (or once per t, then cached), never recomputed
for a t already evaluated.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod

import torch
from torch import nn

from ..errors import ArchitectureMismatchError
from ..subspace import Subspace
from .alignment import align, ot_permutation
from .mlp import check_same_mlp, fit_linear, layer_inputs
from .rules import Rule, get_rule

State = dict[str, torch.Tensor]


class Path(ABC):
    """A path of networks t ↦ θ(t), t ∈ [0, end_time], over the parameters of ``template``."""

    end_time: float = 1.0
    extrapolates: bool = False

    def __init__(self, template: nn.Module) -> None:
        self.template = copy.deepcopy(template).eval()

    @abstractmethod
    def state_at(self, t: float) -> State:
        """The path's parameters at t, by qualified name (parameters not listed keep the template's)."""

    def _check_t(self, t: float) -> float:
        t = float(t)
        if not self.extrapolates and not (-1e-12 <= t <= self.end_time + 1e-12):
            raise ValueError(f"t = {t} outside [0, {self.end_time}] for {type(self).__name__}")
        return t

    @torch.no_grad()
    def load_into(self, model: nn.Module, t: float) -> nn.Module:
        """Write θ(t) into ``model`` (an unwrapped model of the template's architecture)."""
        params = dict(model.named_parameters())
        for name, value in self.state_at(t).items():
            params[name].copy_(value)
        return model

    def model_at(self, t: float) -> nn.Module:
        """A fresh plain model at t (BatchNorm statistics are the template's: re-estimate them)."""
        return self.load_into(copy.deepcopy(self.template), t)

    def vector_at(self, t: float) -> torch.Tensor:
        """θ(t) flattened (in the order of the template's parameters)."""
        state = self.state_at(t)
        names = [n for n, _ in self.template.named_parameters() if n in state]
        return torch.cat([state[n].detach().reshape(-1).double() for n in names])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(end_time={self.end_time})"


def _floating_params(model: nn.Module) -> State:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.is_floating_point()}


class LinearPath(Path):
    """θ(t) = (1 − t)·θ_A + t·θ_B for any two models of one architecture; any real t."""

    extrapolates = True

    def __init__(self, model_a: nn.Module, model_b: nn.Module) -> None:
        super().__init__(model_a)
        self.a = _floating_params(model_a)
        params_b = dict(model_b.named_parameters())
        self.b = {}
        for n, v in self.a.items():
            if n not in params_b:
                raise ArchitectureMismatchError(f"tensor {n!r} of model A is missing in model B")
            if params_b[n].shape != v.shape:
                raise ArchitectureMismatchError(
                    f"tensor {n!r} has shape {tuple(v.shape)} in model A "
                    f"but {tuple(params_b[n].shape)} in model B"
                )
            self.b[n] = params_b[n].detach().clone().to(v.device, v.dtype)

    def state_at(self, t: float) -> State:
        t = self._check_t(t)
        return {n: torch.lerp(self.a[n], self.b[n], t) for n in self.a}


class SubspacePath(Path):
    """A one-parameter subspace (a line, a fitted Bézier curve or chain) as a path, t = α ∈ [0, 1]."""

    def __init__(self, subspace: Subspace) -> None:
        if subspace.geometry.point_dim != 1:
            raise ValueError(f"a path needs a one-parameter subspace, got a {subspace.geometry.describe()}")
        super().__init__(subspace.export(0.0))
        self.subspace = subspace

    @torch.no_grad()
    def state_at(self, t: float) -> State:
        t = self._check_t(t)
        with self.subspace.at(t):
            return {
                name: getattr(r.module, r.local_name).detach().clone()
                for name, r in zip(self.subspace.tensor_names, self.subspace.refs)
            }


class SimultaneousPath(Path):
    """Every parameter tensor connected at once by the rule (rows = dim 0), index pairing, no data."""

    def __init__(self, model_a: nn.Module, model_b: nn.Module, rule: str | Rule = "lin") -> None:
        super().__init__(model_a)
        self.rule = get_rule(rule)
        self.pairs = LinearPath(model_a, model_b)

    def state_at(self, t: float) -> State:
        t = self._check_t(t)
        return {n: self.rule(self.pairs.a[n], self.pairs.b[n], t) for n in self.pairs.a}


class NeuronPath(Path):
    """One hidden layer: neurons z_i = [w_i, b_i, v_i] (incoming weights, bias, outgoing weights)
    of A and B connected by the rule; the output bias by the same rule. ``pairing="ot"`` first
    permutes B's neurons by exact OT on the z_i (Anokhin & Yarotsky's "OT")."""

    def __init__(
        self, model_a: nn.Sequential, model_b: nn.Sequential, rule: str | Rule = "lin", pairing: str = "index"
    ) -> None:
        layers = check_same_mlp(model_a, model_b)
        if len(layers) != 2:
            raise ArchitectureMismatchError(f"NeuronPath needs one hidden layer, got {len(layers) - 1}")
        super().__init__(model_a)
        self.rule = get_rule(rule)
        self.b_model = _paired(model_a, model_b, pairing, "neurons")
        (self.i0, l0a), (self.i1, l1a) = layers
        l0b, l1b = self.b_model[self.i0], self.b_model[self.i1]
        self.za, self.zb = _neurons(l0a, l1a), _neurons(l0b, l1b)
        self.in_features, self.has_bias = l0a.in_features, l0a.bias is not None
        self.out_bias = (_bias(l1a), _bias(l1b))

    def state_at(self, t: float) -> State:
        t = self._check_t(t)
        z = self.rule(self.za, self.zb, t)
        d = self.in_features
        state = {f"{self.i0}.weight": z[:, :d], f"{self.i1}.weight": z[:, d + self.has_bias :].T.contiguous()}
        if self.has_bias:
            state[f"{self.i0}.bias"] = z[:, d]
        if self.out_bias[0] is not None:
            state[f"{self.i1}.bias"] = self.rule(*self.out_bias, t)
        return state


class WeightAdjustedPath(Path):
    """One hidden layer with weight adjustment (Anokhin & Yarotsky's "+ WA"), end_time = 2.

    Phase 1 (s = t ∈ [0, 1]): the first layer (W0, b0)(s) = rule(A → B, s); the output weights are
    re-fitted by least squares so the net keeps A's logits on the data X: W1(s) = argmin ‖H(s) W1ᵀ −
    H_A W1_Aᵀ‖ with H(s) = act(X W0(s)ᵀ + b0(s)); output bias b1_A. Phase 2 (s = t − 1): first
    layer B's, W1 = rule(W̃ → W1_B, s) with W̃ the fit at s = 1, output bias rule(b1_A → b1_B, s).
    ``pairing="ot"`` permutes B's neurons by OT on the incoming weights first. Fits are cached per t.
    """

    end_time = 2.0

    def __init__(
        self,
        model_a: nn.Sequential,
        model_b: nn.Sequential,
        data: torch.Tensor,
        rule: str | Rule = "lin",
        pairing: str = "index",
        ridge: float = 0.0,
    ) -> None:
        layers = check_same_mlp(model_a, model_b)
        if len(layers) != 2:
            raise ArchitectureMismatchError(
                f"WeightAdjustedPath needs one hidden layer, got {len(layers) - 1}"
            )
        super().__init__(model_a)
        self.rule, self.ridge = get_rule(rule), ridge
        self.b_model = _paired(model_a, model_b, pairing, "incoming")
        (self.i0, l0a), (self.i1, l1a) = layers
        l0b, l1b = self.b_model[self.i0], self.b_model[self.i1]
        self.act = model_a[self.i0 + 1 : self.i1]
        self.x = data.reshape(len(data), -1).to(l0a.weight.dtype)
        self.w0 = (l0a.weight.detach().clone(), l0b.weight.detach().clone())
        self.b0 = (_bias(l0a), _bias(l0b))
        self.w1 = (l1a.weight.detach().clone(), l1b.weight.detach().clone())
        self.b1 = (_bias(l1a), _bias(l1b))
        with torch.no_grad():
            self.target = self._hidden(self.w0[0], self.b0[0]) @ self.w1[0].T  # A's logits minus bias
        self._fits: dict[float, torch.Tensor] = {}

    @torch.no_grad()
    def _hidden(self, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        pre = self.x @ w.T + (b if b is not None else 0)
        return self.act(pre)

    def _first_layer(self, s: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.rule(*self.w0, s)
        b = self.rule(*self.b0, s) if self.b0[0] is not None else None
        return w, b

    def _fit(self, s: float) -> torch.Tensor:
        if s not in self._fits:
            self._fits[s] = fit_linear(self._hidden(*self._first_layer(s)), self.target, self.ridge)
        return self._fits[s]

    def state_at(self, t: float) -> State:
        t = self._check_t(t)
        i0, i1 = self.i0, self.i1
        if t <= 1:
            w0, b0 = self._first_layer(t)
            w1 = self.w1[0].clone() if t == 0 else self._fit(t)
            b1 = self.b1[0]
        else:
            s = t - 1
            w0, b0 = self.w0[1], self.b0[1]
            w1 = self.rule(self._fit(1.0), self.w1[1], s)
            b1 = self.rule(*self.b1, s) if self.b1[0] is not None else None
        state = {f"{i0}.weight": w0, f"{i1}.weight": w1}
        if b0 is not None:
            state[f"{i0}.bias"] = b0
        if b1 is not None:
            state[f"{i1}.bias"] = b1
        return state


class _DeepMLPPath(Path):
    """Shared set-up of the step-wise finders for bias-free MLPs: weights, features, W̃, pairing."""

    def __init__(
        self,
        model_a: nn.Sequential,
        model_b: nn.Sequential,
        data: torch.Tensor,
        rule: str | Rule = "lin",
        pairing: str = "index",
        ridge: float = 0.0,
    ) -> None:
        if pairing not in ("index", "ot"):
            raise ValueError(f"pairing must be 'index' or 'ot', got {pairing!r}")
        self.pairing = pairing
        layers = check_same_mlp(model_a, model_b)
        if any(m.bias is not None for _, m in layers):
            raise ArchitectureMismatchError(
                "the step-wise finders need bias-free MLPs (Linear(..., bias=False)); use NeuronPath or "
                "WeightAdjustedPath for one hidden layer with biases"
            )
        super().__init__(model_a)
        self.rule, self.ridge = get_rule(rule), ridge
        self.idx = [i for i, _ in layers]
        self.wa = [m.weight.detach().clone() for _, m in layers]
        self.wb = [model_b[i].weight.detach().clone() for i in self.idx]
        self.x = data.reshape(len(data), -1).to(self.wa[0].dtype)
        self.ha = layer_inputs(model_a, self.x)
        self.hb = layer_inputs(model_b, self.x)
        self.num_layers = len(layers)
        # W̃_k: A's layer k re-expressed on B's layer-(k−1) features (least squares over the data)
        self.w_adj = [self.wa[0]] + [
            fit_linear(self.hb[k], self.ha[k] @ self.wa[k].T, ridge) for k in range(1, self.num_layers)
        ]
        self.targets = [*self.w_adj[:-1], self.wb[-1]]  # butterfly: W̃_1 … W̃_{L−2}, then W_{L−1}^B
        self.acts = [model_a[i + 1 : j] for i, j in zip(self.idx[:-1], self.idx[1:])]
        self._stages: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # OT pairings / vectors per stage
        self._perms: dict[int, torch.Tensor] = {}
        self._fits: dict[float, torch.Tensor] = {}  # least-squares refits per t

    def _state(self, weights: list[torch.Tensor]) -> State:
        return {f"{i}.weight": w for i, w in zip(self.idx, weights)}


class ButterflyPath(_DeepMLPPath):
    """Step-wise butterfly (Anokhin & Yarotsky's "+ B-fly"), end_time = L − 1.

    Stage k = ⌊t⌋, s = t − k: layers < k are B's, layers > k + 1 are A's; hidden neuron j of layer
    k moves as one vector [row j of W_k, column j of W_{k+1}] from [W̃_k, W_{k+1}^A] to
    [W_k^B, W̃_{k+1}] (W̃_{L−1} := W_{L−1}^B) by the rule. Continuous, A at 0, B at L − 1.
    ``pairing="ot"`` matches the butterfly vectors by exact OT once per stage (cached) and permutes
    B's side: at stage boundaries θ jumps by a permutation (the function does not), and the path
    ends at B with its last hidden layer permuted (B's function).
    """

    @property
    def end_time(self) -> float:  # type: ignore[override]
        return float(self.num_layers - 1)

    def _stage(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if k not in self._stages:
            rows = self.wa[k].shape[0]
            za = torch.cat([self.w_adj[k], self.wa[k + 1].T], 1)
            zb = torch.cat([self.wb[k], self.targets[k + 1].T], 1)
            if self.pairing == "ot":
                zb = zb[ot_permutation(za, zb)]
            assert za.shape[0] == rows
            self._stages[k] = (za, zb)
        return self._stages[k]

    def state_at(self, t: float) -> State:
        t = self._check_t(t)
        k = min(int(t), self.num_layers - 2)
        s = t - k
        za, zb = self._stage(k)
        z = self.rule(za, zb, s)
        d = self.wa[k].shape[1]
        weights = [*self.wb[:k], z[:, :d], z[:, d:].T.contiguous(), *self.wa[k + 2 :]]
        return self._state(weights)


class StepwiseAdjustedPath(_DeepMLPPath):
    """Step-wise weight adjustment (Anokhin & Yarotsky's "+ WA"), end_time = L.

    Stage k < L − 1, s = t − k: W_k(s) = rule(W̃_k → W_k^B, s) and the next layer re-fitted at this
    t: W_{k+1}(s) = argmin ‖act(h_k^B W_k(s)ᵀ) W_{k+1}ᵀ − h_{k+1}^A W_{k+1}^Aᵀ‖; last stage:
    W_{L−1} = rule(W̃_{L−1} → W_{L−1}^B, s). Fits are cached per t. As in the reference, θ jumps
    slightly (not the function) where a stage starts; the path starts at A and ends at B exactly.
    ``pairing="ot"`` permutes B's layer-k rows by exact OT against W̃_k's rows in each stage.
    """

    @property
    def end_time(self) -> float:  # type: ignore[override]
        return float(self.num_layers)

    def _target_rows(self, k: int) -> torch.Tensor:
        if self.pairing == "index" or k == self.num_layers - 1:
            return self.wb[k]
        if k not in self._perms:
            self._perms[k] = ot_permutation(self.w_adj[k], self.wb[k])
        return self.wb[k][self._perms[k]]

    @torch.no_grad()
    def _refit(self, k: int, w_k: torch.Tensor, t: float) -> torch.Tensor:
        if t not in self._fits:
            hidden = self.acts[k](self.hb[k] @ w_k.T)
            self._fits[t] = fit_linear(hidden, self.ha[k + 1] @ self.wa[k + 1].T, self.ridge)
        return self._fits[t]

    def state_at(self, t: float) -> State:
        t = self._check_t(t)
        last = self.num_layers - 1
        if t == 0:
            return self._state(list(self.wa))
        k = min(int(t), last)
        s = t - k
        w_k = self.rule(self.w_adj[k], self._target_rows(k), s)
        if k == last:
            return self._state([*self.wb[:last], w_k])
        return self._state([*self.wb[:k], w_k, self._refit(k, w_k, t), *self.wa[k + 2 :]])


def _bias(layer: nn.Linear) -> torch.Tensor | None:
    return None if layer.bias is None else layer.bias.detach().clone()


def _neurons(inc: nn.Linear, out: nn.Linear) -> torch.Tensor:
    parts = [inc.weight.detach()]
    if inc.bias is not None:
        parts.append(inc.bias.detach()[:, None])
    parts.append(out.weight.detach().T)
    return torch.cat(parts, 1).clone()


def _paired(model_a: nn.Sequential, model_b: nn.Sequential, pairing: str, vectors: str) -> nn.Sequential:
    if pairing == "index":
        return model_b
    if pairing == "ot":
        return align(model_a, model_b, vectors=vectors)
    raise ValueError(f"pairing must be 'index' or 'ot', got {pairing!r}")
