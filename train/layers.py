"""Float LIF neurons, surrogate derivatives and the hidden layers of :mod:`localsnn.train.lif`.

Units: membrane potentials ``u`` and thresholds ``theta`` are in the same (arbitrary) units as
a weight times an input; decays ``d`` are dimensionless per-step factors; spikes ``o`` are 0/1.

**Neuron** (Ma et al. eq. 2-3, the golden model's equations without its rounding)::

    u[t] = d * (u[t-1] - theta * o[t-1]) + I[t]          d = exp(-1/tau), soft reset
    o[t] = [u[t] >= theta]

**Surrogate** ``sigma'(u) = do/du`` as a function of ``x = |u - theta|`` (the spec's
:class:`~localsnn.spec.SurrogateSpec` kinds; one definition, :func:`localsnn.spec.surrogate_function`,
evaluated on tensors instead of rounded into a lookup table):

* ``exp``    ``exp(-x / width)``               (Ma eq. 7 with ``width = 1``)
* ``rect``   ``1/width`` where ``x < width/2``   (Guo et al.)
* ``boxcar`` ``1`` where ``x <= width/2``       (DECOLLE)

**Hidden layers.** A :class:`Dense` layer is ``I = x @ w`` with ``w`` input-major
``(fan_in, size)`` (golden's ``w[j, i]`` layout). A :class:`Conv` layer is ``I = conv2d(x, w)``
(``w``: ``(out_channels, in_channels, k, k)``, stride 1, zero padding ``padding``) optionally
followed by ``p``x``p`` average pooling (stride ``p``) of its spikes. Pooling has no weights and
no neurons: it is part of the convolutional layer before it, and the pooled spike map is that
layer's output, read both by the next layer and by the layer's local classifier (4x fewer
classifier weights than reading the unpooled spikes). Every hidden layer has a spiking local
classifier: LIF neurons, one per class, fed by ``z = flatten(output)`` through ``clf_w``
``(features, classes)``.

Each layer also knows the adjoints the local rules need (``weight_grad``, ``post_T``) and its
per-synapse eligibility-trace layout (``trace_*``, FELL).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from localsnn.errors import LocalsnnError
from localsnn.spec import SURROGATES, surrogate_function


class LearnerError(LocalsnnError, ValueError):
    """A float learner was asked for something it cannot build or run (bad rule name, bad
    architecture string, bad option, input of the wrong shape). The message says what was
    wrong and what is allowed."""


# ---------------------------------------------------------------------------------------------
# Neurons and surrogates
# ---------------------------------------------------------------------------------------------


class LIFParams(NamedTuple):
    """Constants of a population of LIF neurons."""

    decay: float  # d = exp(-1/tau), dimensionless, applied once per step
    theta: float  # firing threshold, potential units


class Surrogate(NamedTuple):
    """The surrogate derivative ``sigma'(u)`` (see the module docstring)."""

    kind: str = "exp"
    width: float = 1.0

    def __call__(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        # the spec's one definition (localsnn.spec.surrogate_function), on tensors of u's dtype
        return surrogate_function(self.kind, self.width, (u - theta).abs(), exp=torch.exp, indicator=lambda c: c.to(u.dtype))


def make_surrogate(kind: str, width: float) -> Surrogate:
    if kind not in SURROGATES:
        raise LearnerError(f"surrogate must be one of {', '.join(map(repr, SURROGATES))}, not {kind!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise LearnerError(f"surrogate_width must be a positive number, not {width!r}")
    return Surrogate(kind, float(width))


class _Spike(torch.autograd.Function):
    """``o = [u >= theta]`` forward; ``do/du = sigma'(u)`` backward (the surrogate)."""

    @staticmethod
    def forward(ctx, u, theta, sur):
        ctx.save_for_backward(u)
        ctx.theta, ctx.sur = theta, sur
        return (u >= theta).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * ctx.sur(u, ctx.theta), None, None


def spike(u: torch.Tensor, theta: float, sur: Surrogate) -> torch.Tensor:
    """Eq. 3 with the surrogate gradient (for the rules that use autograd: BPTT, BELL)."""
    return _Spike.apply(u, theta, sur)


def lif_step(u, o, current, p: LIFParams, sur: Surrogate | None = None):
    """One step of eq. 2-3: returns ``(u[t], o[t])`` from ``u[t-1], o[t-1]`` and ``I[t]``.

    With ``sur`` the spike carries the surrogate gradient (autograd through time, the reset
    term included); without it, it is a plain threshold (the closed-form rules)."""
    u = p.decay * (u - p.theta * o) + current  # eq. 2
    o = spike(u, p.theta, sur) if sur is not None else (u >= p.theta).to(u.dtype)  # eq. 3
    return u, o


def fell_factor(u_prev: torch.Tensor, p: LIFParams, sur: Surrogate) -> torch.Tensor:
    """``du[t]/du[t-1] = d * (1 - theta * sigma'(u[t-1]))``: eq. 2 differentiated with the reset
    term through the surrogate (the golden model's FELL factor ``c``)."""
    return p.decay * (1.0 - p.theta * sur(u_prev, p.theta))


def trace_contract(e: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``sum_b e[b, j, i] * delta[b, i]`` for traces ``e`` ``(B, J, I)``: one fused multiply-add
    per sample into the result, so no temporary as large as the traces (and, on a CPU, several
    times faster than ``einsum``)."""
    out = torch.zeros(e.shape[1:], dtype=e.dtype, device=e.device)
    for b in range(e.shape[0]):
        out.addcmul_(e[b], delta[b].unsqueeze(0))
    return out


def uniform_(t: torch.Tensor, bound: float, gen: torch.Generator) -> torch.Tensor:
    """Fill ``t`` with values uniform in ``[-bound, bound]`` from ``gen`` (CPU draws, so the same
    seed gives the same weights on any device)."""
    with torch.no_grad():
        vals = (torch.rand(t.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        t.copy_(vals.to(t.dtype))
    return t


# ---------------------------------------------------------------------------------------------
# Hidden layers
# ---------------------------------------------------------------------------------------------


class _Hidden(nn.Module):
    """What every hidden layer has: its neurons, its spiking classifier, optional feedback."""

    kind: str
    in_shape: tuple[int, ...]
    map_shape: tuple[int, ...]  # the neurons: (size,) or (channels, height, width)
    out_shape: tuple[int, ...]  # the output the next layer and the classifier read

    def _init_classifier(self, classes, clf_neuron: LIFParams, clf_bound, gen, feedback: bool):
        self.classes = classes
        self.clf_neuron = clf_neuron
        self.clf_w = nn.Parameter(uniform_(torch.empty(self.features, classes), clf_bound, gen))
        # FELL-KP's feedback matrix B (Ma eq. 15-16), same layout as clf_w; drawn separately
        self.fb = nn.Parameter(uniform_(torch.empty(self.features, classes), clf_bound, gen)) if feedback else None

    @property
    def features(self) -> int:
        """Inputs of the local classifier: the flattened output map."""
        return math.prod(self.out_shape)

    def feedback_matrix(self) -> torch.Tensor:
        """The matrix that carries the classifier error back: ``clf_w`` (``du^a/do^l``, eq. 6)
        or, for FELL-KP, ``B`` (eq. 15-16)."""
        return self.clf_w if self.fb is None else self.fb


class Dense(_Hidden):
    """Fully connected LIF layer, ``I[t] = x[t] @ w``, ``w`` input-major ``(fan_in, size)``."""

    kind = "fc"

    def __init__(self, in_shape, size, classes, neuron: LIFParams, clf_neuron: LIFParams, bound, clf_bound, gen, feedback=False):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.fan_in = math.prod(self.in_shape)
        self.size = size
        self.map_shape = self.out_shape = (size,)
        self.neuron = neuron
        self.w = nn.Parameter(uniform_(torch.empty(self.fan_in, size), bound, gen))
        self._init_classifier(classes, clf_neuron, clf_bound, gen, feedback)

    def describe(self) -> str:
        return f"{self.size}"

    def current(self, x):
        return x.flatten(1) @ self.w

    def weight_grad(self, x, delta):
        """``sum_b x_j delta_i``: the gradient for ``w`` given ``delta = dL/dI`` (eq. 6's
        ``du/dw = x``)."""
        return x.flatten(1).T @ delta

    def post(self, o):
        return o

    def post_T(self, g):
        return g

    # FELL: e[b, j, i] = du_i/dw_ji, shape (B, fan_in, size)
    def trace_elements(self, batch: int) -> int:
        return batch * self.fan_in * self.size

    def trace_new(self, batch, like):
        return like.new_zeros(batch, self.fan_in, self.size)

    def trace_step(self, e, c, x):
        """Eq. 12: ``e[t] = c * e[t-1] + x[t]`` (``c = du_i[t]/du_i[t-1]``, ``x = du_i/dw_ji``)."""
        return e.mul_(c.unsqueeze(1)).add_(x.flatten(1).unsqueeze(2))

    def trace_grad(self, e, delta):
        """``sum_b e_ji delta_i`` (eq. 14's ``du/dw`` times the local error)."""
        return trace_contract(e, delta)


class Conv(_Hidden):
    """Convolutional LIF layer (stride 1, zero padding ``padding``), then ``pool`` x ``pool``
    average pooling of its spikes (``pool = 1``: none)."""

    kind = "conv"

    def __init__(self, in_shape, channels, kernel, pool, padding, classes, neuron, clf_neuron, bound, clf_bound, gen, feedback=False):
        super().__init__()
        self.in_shape = tuple(in_shape)
        cin, h, w = self.in_shape
        self.channels, self.kernel, self.pool, self.padding = channels, kernel, pool, padding
        self.fan_in = cin * kernel * kernel
        self.map_shape = (channels, h + 2 * padding - kernel + 1, w + 2 * padding - kernel + 1)
        self.out_shape = (channels, self.map_shape[1] // pool, self.map_shape[2] // pool)
        self.size = math.prod(self.map_shape)
        self.neuron = neuron
        self.w = nn.Parameter(uniform_(torch.empty(channels, cin, kernel, kernel), bound, gen))
        self._init_classifier(classes, clf_neuron, clf_bound, gen, feedback)

    def describe(self) -> str:
        return f"{self.channels}c{self.kernel}" + (f"-p{self.pool}" if self.pool > 1 else "")

    def current(self, x):
        return F.conv2d(x, self.w, padding=self.padding)

    def weight_grad(self, x, delta):
        """The adjoint of the convolution in its weights: ``sum_{b,p} x[b, patch(p)] delta[b, c, p]``."""
        return torch.nn.grad.conv2d_weight(x, self.w.shape, delta, padding=self.padding)

    def post(self, o):
        return F.avg_pool2d(o, self.pool) if self.pool > 1 else o

    def post_T(self, g):
        """Adjoint of the pooling: each of the ``pool**2`` inputs of a window gets ``1/pool**2``
        of its gradient; rows and columns the pooling drops (odd sizes) get 0."""
        if self.pool == 1:
            return g
        p = self.pool
        up = g.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3) / (p * p)
        _, h, w = self.map_shape
        return F.pad(up, (0, w - up.shape[3], 0, h - up.shape[2]))

    # FELL: e[b, c, q, p] = du_{c,p}/dw_{c,q} (q: input channel x kernel offset, p: position),
    # shape (B, channels, fan_in, positions): one trace per synapse of the unshared layer
    def trace_elements(self, batch: int) -> int:
        return batch * self.channels * self.fan_in * self.map_shape[1] * self.map_shape[2]

    def trace_new(self, batch, like):
        return like.new_zeros(batch, self.channels, self.fan_in, self.map_shape[1] * self.map_shape[2])

    def trace_step(self, e, c, x):
        """Eq. 12 per unshared synapse: ``e[t] = c[b, c, p] * e[t-1] + x[b, patch(p)]``."""
        b = c.shape[0]
        patches = F.unfold(x, self.kernel, padding=self.padding)  # (B, fan_in, positions)
        return e.mul_(c.reshape(b, self.channels, 1, -1)).add_(patches.unsqueeze(1))

    def trace_grad(self, e, delta):
        """Shared weights: the sum over batch and positions of ``e * delta`` (a matrix-vector
        product per sample and channel, no copy of the traces)."""
        b = delta.shape[0]
        g = torch.matmul(e, delta.reshape(b, self.channels, -1, 1)).sum(0)  # (channels, fan_in, 1)
        return g.reshape(self.w.shape)


# ---------------------------------------------------------------------------------------------
# Architecture strings
# ---------------------------------------------------------------------------------------------

ARCH_HELP = (
    "layers separated by '-': '<N>' a fully connected layer of N neurons, '<C>c<K>' a convolution "
    "with C channels and a KxK kernel, 'p<K>' KxK average pooling after a convolution; the last "
    "number is the classes (e.g. '12c5-p2-64c5-p2-10' or '800-10')"
)


class LayerPlan(NamedTuple):
    """One hidden layer of an architecture string: ``kind`` ``fc`` (``size``) or ``conv``
    (``size`` channels, ``kernel``, ``pool``), with its input and output shapes."""

    kind: str
    size: int
    kernel: int
    pool: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def parse_arch(arch: str, input_shape, padding: str = "valid") -> tuple[list[LayerPlan], int]:
    """Parse ``arch`` for inputs of ``input_shape``; returns (hidden layers, classes).

    ``padding``: ``valid`` (no padding: a KxK convolution shrinks each side by K-1, as in Ma's
    MNIST net 28 -> 24 -> 12 -> 8 -> 4) or ``same`` (odd kernels only; (K-1)/2 zeros each side).
    """
    if not isinstance(arch, str) or not arch.strip():
        raise LearnerError(f"arch must be a non-empty string of {ARCH_HELP}; got {arch!r}")
    if padding not in ("valid", "same"):
        raise LearnerError(f"padding must be one of 'valid', 'same', not {padding!r}")
    shape = _check_input_shape(input_shape)
    tokens = arch.strip().split("-")
    parsed = []
    for k, tok in enumerate(tokens):
        where = f"arch {arch!r}: token {k + 1} {tok!r}"
        if m := re.fullmatch(r"(\d+)", tok):
            parsed.append(("fc", int(m[1]), 0))
        elif m := re.fullmatch(r"(\d+)c(\d+)", tok):
            parsed.append(("conv", int(m[1]), int(m[2])))
        elif m := re.fullmatch(r"p(\d+)", tok):
            parsed.append(("pool", 0, int(m[1])))
        else:
            raise LearnerError(f"{where} is not a layer; allowed: {ARCH_HELP}")
        kind, size, kern = parsed[-1]
        if kind != "pool" and size < 1:
            raise LearnerError(f"{where}: a layer needs at least 1 {'channel' if kind == 'conv' else 'neuron'}")
        if kind != "fc" and kern < 1:
            raise LearnerError(f"{where}: the kernel size must be at least 1")
    if parsed[-1][0] != "fc":
        raise LearnerError(f"arch {arch!r}: the last token must be the number of classes, not {tokens[-1]!r}; {ARCH_HELP}")
    classes = parsed[-1][1]
    if classes < 2:
        raise LearnerError(f"arch {arch!r}: {classes} classes; a classifier needs at least 2")
    if len(parsed) < 2:
        raise LearnerError(f"arch {arch!r} has no hidden layer before its {classes} classes; {ARCH_HELP}")
    plans: list[LayerPlan] = []
    for k, (kind, size, kern) in enumerate(parsed[:-1]):
        where = f"arch {arch!r}: token {k + 1} {tokens[k]!r}"
        if kind == "pool":
            if not plans or plans[-1].kind != "conv" or plans[-1].pool != 1:
                raise LearnerError(f"{where}: average pooling must follow a convolutional layer (at most once)")
            last = plans[-1]
            c, h, w = last.out_shape
            if kern > h or kern > w:
                raise LearnerError(f"{where}: {kern}x{kern} pooling of a {h}x{w} map; the window must fit the map")
            plans[-1] = last._replace(pool=kern, out_shape=(c, h // kern, w // kern))
        elif kind == "conv":
            if plans and plans[-1].kind == "fc":
                raise LearnerError(f"{where}: a convolutional layer cannot follow a fully connected one")
            if not plans and len(shape) != 3:
                raise LearnerError(f"{where}: a convolutional first layer needs input_shape (channels, height, width), not {shape}")
            in_shape = plans[-1].out_shape if plans else shape
            _, h, w = in_shape
            if padding == "same" and kern % 2 == 0:
                raise LearnerError(f"{where}: padding 'same' needs an odd kernel size, not {kern}")
            pad = (kern - 1) // 2 if padding == "same" else 0
            oh, ow = h + 2 * pad - kern + 1, w + 2 * pad - kern + 1
            if oh < 1 or ow < 1:
                raise LearnerError(f"{where}: a {kern}x{kern} kernel does not fit its {h}x{w} input")
            plans.append(LayerPlan("conv", size, kern, 1, in_shape, (size, oh, ow)))
        else:
            in_shape = plans[-1].out_shape if plans else shape
            plans.append(LayerPlan("fc", size, 0, 1, in_shape, (size,)))
    return plans, classes


def _check_input_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise LearnerError(f"input_shape must be a tuple of positive integers ((inputs,) or (channels, height, width)), not {input_shape!r}")
    return shape
