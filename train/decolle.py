"""DECOLLE in float PyTorch (Kaiser, Mostafa & Neftci 2020): the same network as golden's DECOLLE
layer, learning with explicit per-step updates (no autograd through time, memory independent of T).

Neuron and synapse, eq. 4 (time step ``t``; ``l`` the layer, ``j`` its inputs, ``i`` its neurons)::

    U_i[t]   = sum_j W_ji P_j[t] + b_i - rho R_i[t]                         membrane (eq. 4)
    S_i[t]   = [U_i[t] > theta]                                           spike (strict)
    P_j[t+1] = alpha P_j[t] + (1 - alpha) Q_j[t]                          membrane trace
               (trace_order "decolle-public": Q_j[t+1], the authors' code)
    Q_j[t+1] = beta  Q_j[t] + (1 - beta)  S^{l-1}_j[t]                    synaptic trace
    R_i[t+1] = gamma R_i[t] + (1 - gamma) S_i[t]                          refractory trace

with ``alpha, beta, gamma = exp(-1/tau), exp(-1/tau_syn), exp(-1/tau_ref)``. This is golden's DECOLLE
layer (``localsnn.golden.model``) in real numbers, in the same order: ``U`` is formed from this
step's traces, the layer learns from them, then the traces advance with this step's input
(``S^{l-1}[t]``: the previous layer's spikes of the same step, or the encoded input ``x[t]`` for
the first layer). The spike is ``U > theta``, strict (``localsnn.spec.fires``): a neuron at rest
(``U = 0``: zero bias, no input yet) does not fire; the spec's ``threshold`` moves it.
Weights are held input-major, ``w[j, i]`` (``(fan_in, size)``), as golden stores them, so
``U = P @ w + b``.

Local readout and error (section 2.3, eq. 7-8, sign-concordant feedback section 2.3.2)::

    Y_k[t]   = sum_i G_ik S_i[t]                                          fixed random readout
    L^l[t]   = sum_k smoothL1(Y_k[t] - Yhat_k)                            layer loss (section 2.3.4)
    error_i  = sum_k H_ik dL^l/dY_k = sum_k H_ik clip(Y_k - Yhat_k, -1, 1)
    dL/dW_ji = error_i sigma'(U_i - theta) P_j                            eq. 7-8, refractory dropped
    dL/db_i  = error_i sigma'(U_i - theta)

``G`` (``clf_w``, ``(size, classes)``) is uniform in ``+-readout scale``; ``H = G * omega``
(``feedback``, same shape), ``omega ~ N(1, 1/2)`` clipped below at 0, drawn once. ``Yhat`` is
the one-hot label at every step. The smooth L1 loss (Huber with ``beta = 1``) is the paper's;
its derivative is ``Y - Yhat`` whenever ``|Y_k - Yhat_k| <= 1``, which is golden's error
``err_i = sum_k H_ik (Y_k - Yhat_k)`` exactly (golden does not clip). ``loss="mse"`` gives
``L^l = 1/2 sum_k (Y_k - Yhat_k)^2``, golden's error everywhere. The loss is summed over classes
and averaged over the batch, so that with plain SGD at ``lr = 2**-lr_shift``, batch 1,
``update="step"`` and no regulariser, a float update is golden's update before rounding.

Regularisers, section 2.3.4 eq. 9, per layer and sample (``<.>_i`` the mean over the layer's
neurons, ``V = U - theta``; with the paper's ``theta = 0`` this is eq. 9 verbatim)::

    L_reg = lambda_1 < [V_i + 0.01]^+ >_i  +  lambda_2 [0.1 - < V_i >_i]^+

whose gradient with respect to ``U_i`` (``U`` is linear in ``W`` and ``b``, no surrogate) is
``lambda_1/N [V_i + 0.01 > 0] - lambda_2/N [0.1 - <V>_i > 0]``, with ``(lambda_1, lambda_2) =
options.decolle_reg``. The paper's code uses a sigmoid inside the second term; this module uses
eq. 9 as printed.

Every update is written out (``-eta * grad`` is what the optimizer then applies): per step and
layer, ``g_i = error_i sigma'(V_i) + dL_reg/dU_i``, ``W.grad += P^T g / B``, ``b.grad += sum_b g
/ B``. The state is plain tensors computed under ``torch.no_grad()``; nothing is kept between
steps except ``P, Q`` (``[B, fan_in]``) and ``R`` (``[B, size]``) per layer, so the memory of a
training step does not depend on ``T`` (section 2.3.1).

``update = "step"`` (the paper: "weight updates are made for each time step") calls
``optimizer.step()`` after every step; ``"sample"`` sums the step gradients over the window and
steps once. ``G`` and ``H`` are buffers, never trained; ``W`` and ``b`` are the parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from localsnn.errors import SpecError
from localsnn.spec import TRACE_ORDERS, NetworkSpec, advance_traces, fires
from localsnn.train.api import UPDATES, RuleOptions, load_float_weights

#: surrogate derivatives (the spec's ``SurrogateSpec.function`` in torch); ``x = |u - theta|``
SURROGATES = ("exp", "rect", "boxcar")
#: width of a surrogate when neither the options nor the spec give one: Ma eq. 7 (``exp``),
#: Guo Table 1 ``a = 0.5`` (``rect``), DECOLLE's ``[-0.5, 0.5]`` window (``boxcar``)
DEFAULT_WIDTH = {"exp": 1.0, "rect": 0.5, "boxcar": 1.0}
LOSSES = ("smooth_l1", "mse")

#: the paper's public DECOLLE configuration (nmi-lab/decolle-public, N-MNIST, dt = 1 ms):
#: alpha = 0.97, beta = 0.92, gamma ("alpharp") = 0.65, rho ("wrp") = 1, threshold 0,
#: local-readout amplitude 0.5 / sqrt(size)
PAPER_ALPHA = 0.97
PAPER_BETA = 0.92
PAPER_GAMMA = 0.65
PAPER_RHO = 1.0
PAPER_READOUT_AMPL = 0.5


# ---------------------------------------------------------------------------------------------
# Checks and helpers shared with train/tlbptt.py
# ---------------------------------------------------------------------------------------------


def _fail(field: str, detail: str) -> None:
    raise SpecError(field, detail)


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]``, else a SpecError naming ``name`` and what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"expected an integer, got {value!r} ({type(value).__name__})")
    if value < lo or (hi is not None and value > hi):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
        _fail(name, f"{value} is out of range; allowed: {allowed}")
    return value


def check_number(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(name, f"expected a finite number, got {value!r}")
    if positive and value <= 0:
        _fail(name, f"{value!r} must be a positive number")
    if nonnegative and value < 0:
        _fail(name, f"{value!r} must be >= 0")
    return float(value)


def check_options(options: RuleOptions, *, decolle_reg: bool = False) -> None:
    """The fields of :class:`RuleOptions` both rules read (``update``, ``surrogate``,
    ``surrogate_width``, ``seed``), and ``decolle_reg`` when asked."""
    if not isinstance(options, RuleOptions):
        raise TypeError(f"options must be a RuleOptions, not {type(options).__name__}")
    if options.update not in UPDATES:
        _fail("options.update", f"unknown value {options.update!r}; allowed: {', '.join(map(repr, UPDATES))}")
    if options.surrogate is not None and options.surrogate not in SURROGATES:
        _fail("options.surrogate", f"unknown value {options.surrogate!r}; allowed: {', '.join(map(repr, SURROGATES))} or None (the spec's)")
    if options.surrogate_width is not None:
        check_number("options.surrogate_width", options.surrogate_width, positive=True)
    check_int("options.seed", options.seed, 0)
    if not decolle_reg:
        return
    reg = options.decolle_reg
    if not isinstance(reg, (tuple, list)) or len(reg) != 2:
        _fail("options.decolle_reg", f"expected two numbers (lambda_1, lambda_2), got {reg!r}")
    for name, v in zip(("lambda_1", "lambda_2"), reg):
        check_number(f"options.decolle_reg ({name})", v, nonnegative=True)


def resolve_surrogate(options: RuleOptions, spec_kind: str | None, spec_width: float | None, default_kind: str) -> tuple[str, float]:
    """``(kind, width)``: the options' kind, else the spec's, else ``default_kind``; the options'
    width, else the spec's when the kind is the spec's, else :data:`DEFAULT_WIDTH`."""
    kind = options.surrogate or spec_kind or default_kind
    if options.surrogate_width is not None:
        width = float(options.surrogate_width)
    elif spec_kind == kind and spec_width is not None:
        width = float(spec_width)
    else:
        width = DEFAULT_WIDTH[kind]
    return kind, width


def surrogate_derivative(kind: str, width: float, v: Tensor) -> Tensor:
    """``sigma'(v)`` at ``v = u - theta`` with ``x = |v|``, as the spec defines the table
    (:class:`localsnn.spec.SurrogateSpec`): ``exp``: ``exp(-x/width)`` (Ma eq. 7); ``rect``:
    ``1/width`` for ``x < width/2`` (Guo eq. 6); ``boxcar``: ``1`` for ``x <= width/2``
    (DECOLLE section 2.3.4)."""
    x = v.abs()
    if kind == "exp":
        return torch.exp(-x / width)
    if kind == "rect":
        return (x < width / 2).to(v.dtype) / width
    if kind == "boxcar":
        return (x <= width / 2).to(v.dtype)
    raise ValueError(f"unknown surrogate {kind!r}; allowed: {', '.join(map(repr, SURROGATES))}")


def check_batch(x: Tensor, y: Tensor | None, inputs: int, classes: int) -> None:
    """``x`` ``[T, B, inputs]`` and ``y`` ``[B]`` integer labels in ``0..classes-1``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor [T, B, {inputs}], not {type(x).__name__}")
    if x.ndim != 3 or x.shape[2] != inputs or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have shape [T, B, {inputs}] with T, B >= 1; got {list(x.shape)}")
    if y is None:
        return
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor [B] of labels, not {type(y).__name__}")
    if y.shape != (x.shape[1],):
        raise ValueError(f"y must have shape [B] = [{x.shape[1]}]; got {list(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise ValueError(f"y must hold integer labels, not {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"labels must be from 0 to {classes - 1}; got values from {int(y.min())} to {int(y.max())}")


def add_grad(p: nn.Parameter, g: Tensor) -> None:
    """``p.grad += g`` (``p.grad`` may be None after ``optimizer.zero_grad()``)."""
    if p.grad is None:
        p.grad = g.detach().clone()
    else:
        p.grad.add_(g)


def sign_concordant(g: Tensor, generator: torch.Generator) -> Tensor:
    """Section 2.3.2: ``H = G * omega``, ``omega ~ N(1, 1/2)`` (variance 1/2), clipped at 0."""
    omega = 1.0 + math.sqrt(0.5) * torch.randn(g.shape, generator=generator, dtype=torch.float64)
    return (g.to(torch.float64) * omega.clamp_min(0.0)).to(g.dtype)


def uniform(shape: tuple[int, ...], scale: float, generator: torch.Generator) -> Tensor:
    """Uniform in ``[-scale, scale]`` (float32)."""
    return ((torch.rand(shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * scale).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecolleLayerConfig:
    """One DECOLLE layer: its size, eq. 4 constants, initial weight scales and learning flag.

    ``alpha, beta, gamma`` are the decay factors (not time constants); ``init_scale`` the bound
    of the uniform initial ``W`` (``b`` starts at 0, as golden's ``init_params``);
    ``readout_scale`` the bound of the uniform ``G``.
    """

    size: int
    alpha: float
    beta: float
    gamma: float
    rho: float
    threshold: float
    init_scale: float
    readout_scale: float
    learn: bool = True
    trace_order: str = "paper"

    def check(self, where: str) -> None:
        check_int(f"{where}.size", self.size, 1)
        for name in ("alpha", "beta", "gamma"):
            v = check_number(f"{where}.{name}", getattr(self, name))
            if not 0.0 <= v < 1.0:
                _fail(f"{where}.{name}", f"{v!r} is not a decay factor; allowed: 0 <= {name} < 1")
        check_number(f"{where}.rho", self.rho, nonnegative=True)
        check_number(f"{where}.threshold", self.threshold)
        check_number(f"{where}.init_scale", self.init_scale, positive=True)
        check_number(f"{where}.readout_scale", self.readout_scale, positive=True)
        if self.trace_order not in TRACE_ORDERS:
            _fail(f"{where}.trace_order", f"{self.trace_order!r}; allowed: {', '.join(TRACE_ORDERS)}")


class DecolleLayer(nn.Module):
    """Parameters ``w`` ``(fan_in, size)`` and ``bias`` ``(size,)``; buffers ``clf_w`` (G) and
    ``feedback`` (H), both ``(size, classes)``."""

    def __init__(self, fan_in: int, classes: int, cfg: DecolleLayerConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.cfg = cfg
        self.fan_in = fan_in
        self.size = cfg.size
        self.w = nn.Parameter(uniform((fan_in, cfg.size), cfg.init_scale, generator))
        self.bias = nn.Parameter(torch.zeros(cfg.size))
        g = uniform((cfg.size, classes), cfg.readout_scale, generator)
        self.register_buffer("clf_w", g)
        self.register_buffer("feedback", sign_concordant(g, generator))

    def potential(self, P: Tensor, R: Tensor) -> Tensor:
        """Eq. 4: ``U = sum_j W_ji P_j + b_i - rho R_i``."""
        return P @ self.w + self.bias - self.cfg.rho * R

    def advance(self, P: Tensor, Q: Tensor, R: Tensor, s_in: Tensor, S: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Eq. 4, the traces of the next step: ``Q <- beta Q + (1-beta) S_in``, ``P <- alpha P +
        (1-alpha) Q`` with this step's ``Q`` before its update (``trace_order`` "paper") or after
        it ("decolle-public"; ``localsnn.spec.advance_traces``), ``R <- gamma R + (1-gamma) S``."""
        c = self.cfg
        P_new, Q_new = advance_traces(c.trace_order, Q, s_in, lambda t: P + (1.0 - c.alpha) * (t - P), lambda t: Q + (1.0 - c.beta) * (t - Q))
        return P_new, Q_new, R + (1.0 - c.gamma) * (S - R)


class DecolleNet(nn.Module):
    """A stack of DECOLLE layers, each with its fixed random readout; implements
    :class:`localsnn.train.api.Learner` (``rule = "decolle"``)."""

    rule = "decolle"

    def __init__(
        self,
        inputs: int,
        classes: int,
        timesteps: int,
        layers: list[DecolleLayerConfig],
        options: RuleOptions,
        surrogate: tuple[str, float],
        loss: str = "smooth_l1",
    ) -> None:
        super().__init__()
        check_options(options, decolle_reg=True)
        check_int("inputs", inputs, 1)
        check_int("classes", classes, 2)
        check_int("timesteps", timesteps, 1)
        if not layers:
            _fail("layers", "a network needs at least one hidden layer")
        for i, cfg in enumerate(layers):
            if not isinstance(cfg, DecolleLayerConfig):
                raise TypeError(f"layers[{i}] must be a DecolleLayerConfig, not {type(cfg).__name__}")
            cfg.check(f"layers[{i}]")
        kind, width = surrogate
        if kind not in SURROGATES:
            _fail("surrogate", f"unknown value {kind!r}; allowed: {', '.join(map(repr, SURROGATES))}")
        check_number("surrogate width", width, positive=True)
        if loss not in LOSSES:
            _fail("loss", f"unknown value {loss!r}; allowed: {', '.join(map(repr, LOSSES))}")
        self.inputs, self.classes, self.timesteps = inputs, classes, timesteps
        self.options = options
        self.surrogate = (kind, float(width))
        self.loss = loss
        self.reg = (float(options.decolle_reg[0]), float(options.decolle_reg[1]))
        gen = torch.Generator().manual_seed(options.seed)
        fan_ins = [inputs] + [c.size for c in layers[:-1]]
        self.layers = nn.ModuleList(DecolleLayer(f, classes, c, gen) for f, c in zip(fan_ins, layers))

    # -- Learner -------------------------------------------------------------------------------

    def layer_names(self) -> list[str]:
        return [f"layer{i}" for i in range(len(self.layers))]

    def train_step(self, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One window: every step, every layer forms eq. 4, its local loss and the eq. 7-8 (+ eq. 9)
        gradient, written into ``w.grad`` and ``bias.grad``; the optimizer steps after every step
        (``update = "step"``) or once at the end (``"sample"``, gradients summed over steps)."""
        check_batch(x, y, self.inputs, self.classes)
        for p in self.parameters():
            p.grad = None
        x = x.to(device=self.layers[0].w.device, dtype=self.layers[0].w.dtype)
        T = x.shape[0]
        target = torch.nn.functional.one_hot(y.to(x.device).long(), self.classes).to(x.dtype)
        totals = [torch.zeros((), dtype=x.dtype, device=x.device) for _ in self.layers]  # no sync per step

        def learn(i, layer, P, Q, R, U, S, Y):
            loss, gU = self.local_loss(layer, U, Y, target)
            totals[i] += loss
            if layer.cfg.learn:
                gw, gb = self.weight_gradients(P, gU)
                add_grad(layer.w, gw)
                add_grad(layer.bias, gb)

        def apply():
            optimizer.step()
            optimizer.zero_grad()

        with torch.no_grad():
            self._window(x, learn, apply if self.options.update == "step" else None)
            if self.options.update == "sample":
                apply()
        out = {f"loss/{name}": float(tot) / T for name, tot in zip(self.layer_names(), totals)}
        out["loss"] = sum(out.values())
        return out

    def evaluate(self, x: Tensor) -> list[Tensor]:
        """Each layer's readout summed over the window, ``sum_t Y[t]`` ``[B, classes]`` (golden's
        decision counts of a random readout); memory independent of ``T``."""
        return self._run(x, None)

    # -- the rule, step by step ----------------------------------------------------------------

    def local_loss(self, layer: DecolleLayer, U: Tensor, Y: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """This step's loss ``mean_b (L^l + L_reg)`` and its gradient with respect to ``U``
        ``[B, size]`` through the readout (``H`` in place of ``G``, surrogate at ``S``) and
        the regularisers (see the module docstring)."""
        B = U.shape[0]
        kind, width = self.surrogate
        e = Y - target
        if self.loss == "smooth_l1":
            per = torch.where(e.abs() < 1.0, 0.5 * e * e, e.abs() - 0.5)
            dY = e.clamp(-1.0, 1.0)
        else:
            per = 0.5 * e * e
            dY = e
        V = U - layer.cfg.threshold
        # error_i = sum_k H_ik dL/dY_k ; dL/dU_i = error_i sigma'(U_i)      (eq. 7-8)
        gU = (dY @ layer.feedback.T) * surrogate_derivative(kind, width, V)
        loss = per.sum(dim=1)
        lam1, lam2 = self.reg
        if lam1 or lam2:
            N = V.shape[1]
            mean_v = V.mean(dim=1, keepdim=True)
            # eq. 9: lambda_1 <[V + 0.01]^+>_i + lambda_2 [0.1 - <V>_i]^+
            loss = loss + lam1 * torch.relu(V + 0.01).mean(dim=1) + lam2 * torch.relu(0.1 - mean_v).squeeze(1)
            gU = gU + (lam1 / N) * (V + 0.01 > 0).to(V.dtype) - (lam2 / N) * (0.1 - mean_v > 0).to(V.dtype)
        return loss.mean(), gU / B

    @staticmethod
    def weight_gradients(P: Tensor, gU: Tensor) -> tuple[Tensor, Tensor]:
        """``dL/dW_ji = sum_b P_bj gU_bi`` and ``dL/db_i = sum_b gU_bi`` (``gU`` already / B)."""
        return P.T @ gU, gU.sum(dim=0)

    def _initial_state(self, B: int, x: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        z = lambda n: torch.zeros(B, n, dtype=x.dtype, device=x.device)
        return [(z(layer.fan_in), z(layer.fan_in), z(layer.size)) for layer in self.layers]

    def record(self, x: Tensor) -> list[dict[str, Tensor]]:
        """Learning off: every layer's ``P, Q`` ``[T, B, fan_in]``, ``R, U, S`` ``[T, B, size]``
        and ``Y`` ``[T, B, classes]`` at every step (``P, Q, R`` as ``U`` used them)."""
        rec: list[dict[str, list[Tensor]]] = [{k: [] for k in self._RECORDED} for _ in self.layers]
        self._run(x, rec)
        return [{k: torch.stack(v) for k, v in r.items()} for r in rec]

    _RECORDED = ("P", "Q", "R", "U", "S", "Y")

    def _run(self, x: Tensor, rec: list[dict[str, list[Tensor]]] | None) -> list[Tensor]:
        """Eq. 4 over the window, learning off; returns ``sum_t Y[t]`` per layer and appends
        every step's values to ``rec`` when given."""
        check_batch(x, None, self.inputs, self.classes)
        x = x.to(device=self.layers[0].w.device, dtype=self.layers[0].w.dtype)
        sums = [torch.zeros(x.shape[1], self.classes, dtype=x.dtype, device=x.device) for _ in self.layers]

        def observe(i, layer, P, Q, R, U, S, Y):
            sums[i] += Y
            if rec is not None:
                for k, v in zip(self._RECORDED, (P, Q, R, U, S, Y)):
                    rec[i][k].append(v)

        with torch.no_grad():
            self._window(x, observe)
        return sums

    def _window(self, x: Tensor, visit, after_step=None) -> None:
        """Eq. 4 over the window, every layer at every step: ``U`` from the traces as they
        are, ``S``, the readout ``Y``; then ``visit(i, layer, P, Q, R, U, S, Y)`` (which may
        learn: it sees the traces this step used) before the traces advance; ``after_step()``
        once every layer has done the step."""
        state = self._initial_state(x.shape[1], x)
        for t in range(x.shape[0]):
            s_in = x[t]
            for i, layer in enumerate(self.layers):
                P, Q, R = state[i]
                U = layer.potential(P, R)
                S = fires("decolle", U, layer.cfg.threshold).to(x.dtype)
                Y = S @ layer.clf_w
                visit(i, layer, P, Q, R, U, S, Y)
                state[i] = layer.advance(P, Q, R, s_in, S)
                s_in = S
            if after_step is not None:
                after_step()

    # -- weights in and out ----------------------------------------------------------------------

    def float_weights(self) -> list[dict[str, Tensor]]:
        """Per layer ``{"w": (fan_in, size), "bias": (size,), "clf_w": G (size, classes),
        "feedback": H (size, classes)}``, detached copies, in golden's layout."""
        return [
            {"w": lay.w.detach().clone(), "bias": lay.bias.detach().clone(), "clf_w": lay.clf_w.detach().clone(), "feedback": lay.feedback.detach().clone()}
            for lay in self.layers
        ]

    def load_float_weights(self, weights: list[dict[str, Tensor]]) -> None:
        """Set every layer's ``w, bias, clf_w, feedback`` (shapes as :meth:`float_weights`)."""
        load_float_weights(self.layers, weights, ("w", "bias", "clf_w", "feedback"))


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
    alpha: float = PAPER_ALPHA,
    beta: float = PAPER_BETA,
    gamma: float = PAPER_GAMMA,
    rho: float = PAPER_RHO,
    threshold: float = 0.0,
    init_gain: float = 1.0,
    readout_ampl: float = PAPER_READOUT_AMPL,
    learn: list[bool] | None = None,
    loss: str = "smooth_l1",
    surrogate: tuple[str, float] | None = None,
) -> DecolleNet:
    """A DECOLLE net from a plain architecture, with the paper's constants unless given.

    The defaults are those of the paper's public code for N-MNIST (``alpha = 0.97, beta =
    0.92, gamma = 0.65, rho = 1``, spikes at ``U >= 0``, readout ``G`` uniform in ``+-0.5 /
    sqrt(size)``); they were made for ``dt = 1 ms`` and windows of hundreds of steps, so for
    short windows pass faster decays. ``W`` starts uniform in ``+-init_gain / sqrt(fan_in)``
    (the spec's default fan-in rule), ``b`` at 0. Surrogate: the options', else ``surrogate``
    (``(kind, width)``, e.g. a spec's), else boxcar of width 1 (the paper's ``[-0.5, 0.5]``).
    """
    check_options(options, decolle_reg=True)
    if not isinstance(sizes, (list, tuple)) or not sizes:
        _fail("sizes", f"expected a non-empty list of layer sizes, got {sizes!r}")
    for i, s in enumerate(sizes):
        check_int(f"sizes[{i}]", s, 1)
    check_int("inputs", inputs, 1)
    learn = [True] * len(sizes) if learn is None else list(learn)
    if len(learn) != len(sizes):
        _fail("learn", f"{len(learn)} flags for {len(sizes)} layers")
    fan_ins = [inputs] + list(sizes[:-1])
    cfgs = [
        DecolleLayerConfig(
            size=s,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            rho=rho,
            threshold=threshold,
            init_scale=check_number("init_gain", init_gain, positive=True) / math.sqrt(f),
            readout_scale=check_number("readout_ampl", readout_ampl, positive=True) / math.sqrt(s),
            learn=bool(lr),
        )
        for s, f, lr in zip(sizes, fan_ins, learn)
    ]
    spec_kind, spec_width = surrogate if surrogate is not None else (None, None)
    return DecolleNet(inputs, classes, timesteps, cfgs, options, resolve_surrogate(options, spec_kind, spec_width, "boxcar"), loss)


def build(spec: NetworkSpec, rule: str = "decolle", options: RuleOptions = RuleOptions()) -> DecolleNet:
    """The float DECOLLE learner of ``spec``.

    A spec of DECOLLE layers gives golden's network: each layer's ``alpha, beta, gamma`` are the
    spec's quantized decays (``neuron.alpha.value`` ...: the factors the chip multiplies by),
    ``rho`` and ``threshold`` the spec's, ``W`` uniform in the spec's ``init`` bound, ``G``
    uniform in the classifier's ``init`` bound (both as real values of the weight formats), the
    surrogate the spec's (or the options'), ``layer.learn`` honoured. A spec of LIF layers gives
    :func:`build_arch` of its sizes with the paper's constants (the spec's LIF constants say
    nothing about P, Q, R; the spec's surrogate still applies unless the options name one). A
    spec mixing both is refused.
    """
    if rule != "decolle":
        _fail("rule", f"{rule!r}: train/decolle.py builds the 'decolle' rule only")
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, not {type(spec).__name__}")
    check_options(options, decolle_reg=True)
    models = {ls.neuron.model for ls in spec.layers}
    sur = spec.learning.surrogate
    if models == {"lif"}:
        sizes = [ls.size for ls in spec.layers]
        return build_arch(sizes, spec.inputs, spec.classes, spec.timesteps, options, learn=[ls.learn for ls in spec.layers], surrogate=(sur.kind, sur.width))
    if models != {"decolle"}:
        kinds = ", ".join(f"layers[{i}]: {ls.neuron.model!r}" for i, ls in enumerate(spec.layers))
        _fail("layers", f"DECOLLE needs every layer to be 'decolle' (or every layer 'lif', for the paper's constants); got {kinds}")
    cfgs = []
    for i, ls in enumerate(spec.layers):
        n = ls.neuron
        clf = ls.classifier
        fan_in = spec.fan_in(i)
        cfgs.append(
            DecolleLayerConfig(
                size=ls.size,
                alpha=n.alpha.value,
                beta=n.beta.value,
                gamma=n.gamma.value,
                rho=n.rho,
                threshold=n.threshold,
                init_scale=ls.init.bound(fan_in, ls.weight) / (1 << ls.weight.frac),
                readout_scale=clf.init.bound(ls.size, clf.weight) / (1 << clf.weight.frac),
                learn=ls.learn,
                trace_order=n.trace_order,
            )
        )
    return DecolleNet(spec.inputs, spec.classes, spec.timesteps, cfgs, options, resolve_surrogate(options, sur.kind, sur.width, "boxcar"))


RULES = {"decolle": build}

__all__ = [
    "DecolleLayer",
    "DecolleLayerConfig",
    "DecolleNet",
    "RULES",
    "build",
    "build_arch",
    "surrogate_derivative",
]
