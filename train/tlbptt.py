"""Temporally-truncated local BPTT (Guo, Fouda, Eltawil & Salama 2023) in float PyTorch.

Neuron, Guo eq. 1-2 (layer ``n``, step ``t``)::

    u_i^{t+1,n} = tau u_i^{t,n} + sum_j W_ij^n s_j^{t+1,n-1} - theta s_i^{t,n}      (eq. 1)
    s_i^{t+1,n} = Theta(u_i^{t+1,n} - u_th)                                        (eq. 2)

Guo's ``tau`` is a leak *factor* (0.3 to 0.9 in Table 1), not a time constant: it is Ma's ``d =
exp(-1/tau_Ma)`` and the spec's ``neuron.alpha`` (whose ``tau`` field is the time constant in
steps). Guo's ``theta`` is a reset constant separate from the threshold ``u_th``. Golden's LIF
neuron, ``u[t] = d (u[t-1] - theta_g o[t-1]) + I[t]``, is eq. 1 with ``tau = d``, ``u_th =
theta_g`` and reset ``theta = d theta_g`` (its reset decays with the potential), so a net built
from a LIF spec here runs golden's forward equations (:class:`LIFConstants` ``.golden``).
Weights are input-major, ``w[j, i]`` ``(fan_in, size)``: ``I = s_in @ w``.

Training, section 2.2 and Algorithm 1. The layers form blocks of ``n`` consecutive layers
(``options.n``; the last block may be shorter); the last layer of each block carries a local
classifier, a layer of LIF neurons fed with the block's output spikes, trainable or, with
``options.random_classifiers``, fixed random (Guo's comparison). The window of ``T`` steps is cut
into intervals of ``k`` steps (``options.k``; the last may be shorter). In each interval:

* forward: every layer and classifier steps eq. 1-2 for the interval's steps; the state
  ``(u, s)`` carried in from the previous interval is detached (truncation: "the error flow is
  discontinued between truncation intervals"), and the spikes entering a block are detached (no
  error crosses between blocks);
* loss, eq. 3 per classifier, the firing rate over the interval against the one-hot target::

      L = 1/N_c sum_i (y_i - 1/k sum_t s_{c,i}(t))^2          (averaged over the batch)

* backward: autograd of the sum of the classifiers' losses through the interval only; with
  the rectangular surrogate of eq. 6, ``Theta'(u) ~ 1/a [|u - u_th| < a/2]``, this is exactly
  eq. 4-5 (spike and potential errors back in space within a block and back in time within
  the interval) and eq. 7 (weight gradients summed over the interval's steps);
* update: ``optimizer.step()`` at the end of every interval (Algorithm 1, ``update =
  "step"``), or the interval gradients are summed and the optimizer steps once at the end of
  the window (``update = "sample"``).

With ``k = T`` and ``n`` = all layers this is global BPTT of eq. 3 through the whole window;
the autograd graph alive at any time covers ``k`` steps, so memory grows with ``k``, not ``T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from localsnn.errors import SpecError
from localsnn.spec import NetworkSpec
from localsnn.train.api import RuleOptions
from localsnn.train.decolle import (
    SURROGATES,
    check_batch,
    check_int,
    check_number,
    check_options,
    resolve_surrogate,
    surrogate_derivative,
    uniform,
)

#: Guo Table 1 (EMNIST, CIFAR10): leak factor tau 0.8-0.9, threshold 0.4-0.6, surrogate width a = 0.5
GUO_LEAK = 0.8
GUO_THRESHOLD = 0.5
GUO_WIDTH = 0.5


@dataclass(frozen=True)
class LIFConstants:
    """Guo eq. 1-2: ``u <- leak u + I - reset s``, ``s = Theta(u - threshold)``."""

    leak: float
    threshold: float
    reset: float

    @classmethod
    def golden(cls, d: float, theta: float) -> LIFConstants:
        """Golden's / Ma's ``u = d (u - theta o) + I``: leak ``d``, reset ``d theta``."""
        return cls(leak=d, threshold=theta, reset=d * theta)

    def check(self, where: str) -> None:
        v = check_number(f"{where}.leak", self.leak)
        if not 0.0 <= v <= 1.0:
            raise SpecError(f"{where}.leak", f"{v!r} is not a leak factor; allowed: 0 <= leak <= 1 (Guo's tau)")
        check_number(f"{where}.threshold", self.threshold, positive=True)
        check_number(f"{where}.reset", self.reset, nonnegative=True)


class _Spike(torch.autograd.Function):
    """``Theta(v)`` forward (eq. 2), the surrogate ``sigma'(v)`` backward (eq. 6 for ``rect``)."""

    @staticmethod
    def forward(ctx, v: Tensor, kind: str, width: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.kind, ctx.width = kind, width
        return (v >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad * surrogate_derivative(ctx.kind, ctx.width, v), None, None


def spike(v: Tensor, kind: str, width: float) -> Tensor:
    return _Spike.apply(v, kind, width)


def lif_step(current: Tensor, u: Tensor, s: Tensor, c: LIFConstants, kind: str, width: float) -> tuple[Tensor, Tensor]:
    """Eq. 1-2: ``u' = leak u + I - reset s``, ``s' = Theta(u' - threshold)``; returns ``(u', s')``."""
    u = c.leak * u + current - c.reset * s
    return u, spike(u - c.threshold, kind, width)


class TLBPTTNet(nn.Module):
    """LIF layers in blocks with local classifiers, trained by truncated local BPTT; implements
    :class:`localsnn.train.api.Learner` (``rule = "tlbptt"``).

    Parameters, in this order: ``w[l]`` ``(fan_in, size)`` per layer, then for each ``l`` in
    :attr:`clf_layers` the classifier weights ``clf.layer<l>`` ``(size, classes)`` (buffers
    instead of parameters when ``options.random_classifiers``).
    """

    rule = "tlbptt"

    def __init__(
        self,
        inputs: int,
        classes: int,
        timesteps: int,
        sizes: list[int],
        neurons: list[LIFConstants],
        clf_neurons: list[LIFConstants],
        init_scales: list[float],
        clf_init_scales: list[float],
        options: RuleOptions,
        surrogate: tuple[str, float],
        learn: list[bool] | None = None,
    ) -> None:
        super().__init__()
        check_options(options)
        check_int("inputs", inputs, 1)
        check_int("classes", classes, 2)
        check_int("timesteps", timesteps, 1)
        if not isinstance(sizes, (list, tuple)) or not sizes:
            raise SpecError("sizes", f"expected a non-empty list of layer sizes, got {sizes!r}")
        L = len(sizes)
        for i, s in enumerate(sizes):
            check_int(f"sizes[{i}]", s, 1)
        for name, seq in (("neurons", neurons), ("clf_neurons", clf_neurons), ("init_scales", init_scales), ("clf_init_scales", clf_init_scales)):
            if len(seq) != L:
                raise SpecError(name, f"{len(seq)} entries for {L} layers")
        for i in range(L):
            neurons[i].check(f"layers[{i}].neuron")
            clf_neurons[i].check(f"layers[{i}].classifier.neuron")
            check_number(f"layers[{i}].init_scale", init_scales[i], positive=True)
            check_number(f"layers[{i}].classifier.init_scale", clf_init_scales[i], positive=True)
        self.k = check_int("options.k", options.k, 1, timesteps)
        self.n = check_int("options.n", options.n, 1, L)
        kind, width = surrogate
        if kind not in SURROGATES:
            raise SpecError("surrogate", f"unknown value {kind!r}; allowed: {', '.join(map(repr, SURROGATES))}")
        check_number("surrogate width", width, positive=True)
        learn = [True] * L if learn is None else [bool(v) for v in learn]
        if len(learn) != L:
            raise SpecError("learn", f"{len(learn)} flags for {L} layers")
        self.inputs, self.classes, self.timesteps = inputs, classes, timesteps
        self.sizes = list(sizes)
        self.options = options
        self.surrogate = (kind, float(width))
        self.neurons = list(neurons)
        self.learn = learn
        #: layers that carry a classifier: the last of each block of n
        self.clf_layers = [l for l in range(L) if (l + 1) % self.n == 0 or l == L - 1]
        self.clf_neurons = {l: clf_neurons[l] for l in self.clf_layers}
        gen = torch.Generator().manual_seed(options.seed)
        fan_ins = [inputs] + list(sizes[:-1])
        self.w = nn.ParameterList()
        for l in range(L):
            p = nn.Parameter(uniform((fan_ins[l], sizes[l]), init_scales[l], gen))
            p.requires_grad_(learn[l])
            self.w.append(p)
        #: the classifiers' weights, ``clf.layer<l>``: parameters, or buffers when fixed random
        self.clf = nn.Module()
        for l in range(L):  # drawn for every layer, so the random sequence does not depend on n
            cw = uniform((sizes[l], classes), clf_init_scales[l], gen)
            if l not in self.clf_layers:
                continue
            if options.random_classifiers:
                self.clf.register_buffer(f"layer{l}", cw)
            else:
                self.clf.register_parameter(f"layer{l}", nn.Parameter(cw))

    # -- Learner -------------------------------------------------------------------------------

    def layer_names(self) -> list[str]:
        return [f"layer{l}" for l in self.clf_layers]

    def classifier_weight(self, layer: int) -> Tensor:
        return getattr(self.clf, f"layer{layer}")

    def intervals(self, T: int) -> list[tuple[int, int]]:
        """``[t0, t1)`` of each truncation interval of a ``T``-step window (Algorithm 1)."""
        return [(t0, min(t0 + self.k, T)) for t0 in range(0, T, self.k)]

    def train_step(self, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One window, Algorithm 1: per interval forward, eq. 3 losses, backward, optimizer step."""
        check_batch(x, y, self.inputs, self.classes)
        for p in self.parameters():
            p.grad = None
        x = x.to(device=self.w[0].device, dtype=self.w[0].dtype)
        T, B = x.shape[:2]
        target = torch.nn.functional.one_hot(y.to(x.device).long(), self.classes).to(x.dtype)
        state = self._initial_state(B, x)
        totals = {l: torch.zeros((), dtype=x.dtype, device=x.device) for l in self.clf_layers}
        spans = self.intervals(T)
        for t0, t1 in spans:
            # truncation: no error flows into the previous interval
            state = {key: (u.detach(), s.detach()) for key, (u, s) in state.items()}
            with torch.enable_grad():
                counts, state = self._forward(x, t0, t1, state, learn=True)
                losses = {l: self.rate_loss(counts[l], t1 - t0, target) for l in self.clf_layers}
                total = sum(losses.values())
                if total.requires_grad:
                    total.backward()
            for l in self.clf_layers:
                totals[l] += losses[l].detach()
            if self.options.update == "step":
                optimizer.step()
                optimizer.zero_grad()
        if self.options.update == "sample":
            optimizer.step()
            optimizer.zero_grad()
        out = {f"loss/layer{l}": float(totals[l]) / len(spans) for l in self.clf_layers}
        out["loss"] = sum(out.values())
        return out

    def evaluate(self, x: Tensor) -> list[Tensor]:
        """Each classifier's spike counts over the window ``[B, classes]``, first block first."""
        check_batch(x, None, self.inputs, self.classes)
        x = x.to(device=self.w[0].device, dtype=self.w[0].dtype)
        with torch.no_grad():
            counts, _ = self._forward(x, 0, x.shape[0], self._initial_state(x.shape[1], x), learn=False)
        return [counts[l] for l in self.clf_layers]

    # -- pieces --------------------------------------------------------------------------------

    @staticmethod
    def rate_loss(count: Tensor, steps: int, target: Tensor) -> Tensor:
        """Eq. 3: ``1/N_c sum_i (y_i - count_i / k)^2``, averaged over the batch."""
        return ((target - count / steps) ** 2).mean(dim=1).mean()

    def _initial_state(self, B: int, x: Tensor) -> dict[tuple[str, int], tuple[Tensor, Tensor]]:
        z = lambda n: torch.zeros(B, n, dtype=x.dtype, device=x.device)
        st = {("h", l): (z(s), z(s)) for l, s in enumerate(self.sizes)}
        st.update({("c", l): (z(self.classes), z(self.classes)) for l in self.clf_layers})
        return st

    def record(self, x: Tensor) -> list[dict[str, Tensor]]:
        """Learning off: per layer ``u, s`` ``[T, B, size]`` and, for the layers with a
        classifier, ``cu, cs`` ``[T, B, classes]``, at every step."""
        check_batch(x, None, self.inputs, self.classes)
        x = x.to(device=self.w[0].device, dtype=self.w[0].dtype)
        rec: list[dict[str, list[Tensor]]] = [{} for _ in self.sizes]
        with torch.no_grad():
            self._forward(x, 0, x.shape[0], self._initial_state(x.shape[1], x), learn=False, rec=rec)
        return [{key: torch.stack(v) for key, v in r.items()} for r in rec]

    def _forward(self, x: Tensor, t0: int, t1: int, state: dict, learn: bool, rec: list | None = None) -> tuple[dict[int, Tensor], dict]:
        """Steps ``t0 .. t1-1`` of eq. 1-2 for every layer and classifier; returns the
        classifiers' spike counts over those steps and the final state (``rec``: per layer, lists
        of the states of every step are appended to)."""
        kind, width = self.surrogate
        B = x.shape[1]
        counts = {l: torch.zeros(B, self.classes, dtype=x.dtype, device=x.device) for l in self.clf_layers}
        for t in range(t0, t1):
            s_in = x[t]
            for l in range(len(self.sizes)):
                if learn and l % self.n == 0:
                    s_in = s_in.detach()  # a block starts: no error crosses into the block below
                u, s = state[("h", l)]
                u, s = lif_step(s_in @ self.w[l], u, s, self.neurons[l], kind, width)
                state[("h", l)] = (u, s)
                if rec is not None:
                    rec[l].setdefault("u", []).append(u)
                    rec[l].setdefault("s", []).append(s)
                if l in self.clf_neurons:
                    cu, cs = state[("c", l)]
                    cu, cs = lif_step(s @ self.classifier_weight(l), cu, cs, self.clf_neurons[l], kind, width)
                    state[("c", l)] = (cu, cs)
                    counts[l] = counts[l] + cs
                    if rec is not None:
                        rec[l].setdefault("cu", []).append(cu)
                        rec[l].setdefault("cs", []).append(cs)
                s_in = s
        return counts, state

    def float_weights(self) -> list[dict[str, Tensor]]:
        """Per layer ``{"w": (fan_in, size)}``, plus ``"clf_w": (size, classes)`` for the layers
        that carry a classifier (:attr:`clf_layers`); detached copies."""
        out = []
        for l, w in enumerate(self.w):
            d = {"w": w.detach().clone()}
            if l in self.clf_neurons:
                d["clf_w"] = self.classifier_weight(l).detach().clone()
            out.append(d)
        return out


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def build_arch(
    sizes: list[int],
    inputs: int,
    classes: int,
    timesteps: int,
    options: RuleOptions = RuleOptions(),
    *,
    leak: float = GUO_LEAK,
    threshold: float = GUO_THRESHOLD,
    reset: float | None = None,
    clf_leak: float | None = None,
    clf_threshold: float | None = None,
    init_gain: float = 1.0,
    learn: list[bool] | None = None,
    surrogate: tuple[str, float] | None = None,
) -> TLBPTTNet:
    """Truncated local BPTT on a plain architecture with Guo's constants unless given.

    Every neuron (hidden and classifier) is eq. 1-2 with ``tau = leak`` (Table 1: 0.8),
    ``u_th = threshold`` (0.5) and reset ``theta = reset`` (default: the threshold, the usual
    soft reset); classifiers may take their own ``clf_leak``/``clf_threshold``. Weights start
    uniform in ``+-init_gain / sqrt(fan_in)``. Surrogate: the options', else ``surrogate``
    (``(kind, width)``, e.g. a spec's), else ``rect`` of width ``a = 0.5`` (Table 1).
    """
    check_options(options)
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise SpecError("sizes", f"expected a non-empty list of layer sizes, got {sizes!r}")
    for i, s in enumerate(sizes):
        check_int(f"sizes[{i}]", s, 1)
    check_int("inputs", inputs, 1)
    check_number("init_gain", init_gain, positive=True)
    hidden = LIFConstants(leak, threshold, threshold if reset is None else reset)
    cl = clf_leak if clf_leak is not None else leak
    ct = clf_threshold if clf_threshold is not None else threshold
    clf = LIFConstants(cl, ct, ct if reset is None else reset)
    L = len(sizes)
    fan_ins = [inputs] + list(sizes[:-1])
    return TLBPTTNet(
        inputs,
        classes,
        timesteps,
        list(sizes),
        [hidden] * L,
        [clf] * L,
        [init_gain / math.sqrt(f) for f in fan_ins],
        [init_gain / math.sqrt(s) for s in sizes],
        options,
        resolve_surrogate(options, *(surrogate if surrogate is not None else (None, None)), "rect"),
        learn,
    )


def build(spec: NetworkSpec, rule: str = "tlbptt", options: RuleOptions = RuleOptions()) -> TLBPTTNet:
    """Truncated local BPTT on ``spec``'s network.

    A spec of LIF layers gives golden's neurons (:meth:`LIFConstants.golden` with the spec's
    quantized decay ``neuron.alpha.value`` and threshold, for the layers and their spiking
    classifiers), initial weights uniform in the spec's ``init`` bounds, the spec's surrogate
    unless the options name one, ``layer.learn`` honoured. A spec of DECOLLE layers gives
    :func:`build_arch` of its sizes with Guo's constants (eq. 1-2 has no P, Q, R; the spec's
    surrogate still applies unless the options name one). A spec mixing both is refused.
    """
    if rule != "tlbptt":
        raise SpecError("rule", f"{rule!r}: train/tlbptt.py builds the 'tlbptt' rule only")
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, not {type(spec).__name__}")
    check_options(options)
    sizes = [ls.size for ls in spec.layers]
    learn = [ls.learn for ls in spec.layers]
    models = {ls.neuron.model for ls in spec.layers}
    sur = spec.learning.surrogate
    if models == {"decolle"}:
        return build_arch(sizes, spec.inputs, spec.classes, spec.timesteps, options, learn=learn, surrogate=(sur.kind, sur.width))
    if models != {"lif"}:
        kinds = ", ".join(f"layers[{i}]: {ls.neuron.model!r}" for i, ls in enumerate(spec.layers))
        raise SpecError("layers", f"truncated local BPTT needs every layer to be 'lif' (or every layer 'decolle', for Guo's constants); got {kinds}")
    neurons, clf_neurons, scales, clf_scales = [], [], [], []
    for i, ls in enumerate(spec.layers):
        neurons.append(LIFConstants.golden(ls.neuron.alpha.value, ls.neuron.threshold))
        cn = ls.classifier.neuron
        clf_neurons.append(LIFConstants.golden(cn.alpha.value, cn.threshold))
        scales.append(ls.init.bound(spec.fan_in(i), ls.weight) / (1 << ls.weight.frac))
        clf = ls.classifier
        clf_scales.append(clf.init.bound(ls.size, clf.weight) / (1 << clf.weight.frac))
    return TLBPTTNet(
        spec.inputs,
        spec.classes,
        spec.timesteps,
        sizes,
        neurons,
        clf_neurons,
        scales,
        clf_scales,
        options,
        resolve_surrogate(options, sur.kind, sur.width, "rect"),
        learn,
    )


RULES = {"tlbptt": build}

__all__ = ["LIFConstants", "RULES", "TLBPTTNet", "build", "build_arch", "lif_step", "spike"]
