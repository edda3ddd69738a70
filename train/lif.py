"""Float LIF networks with local classifiers, and the rules BPTT, ELL, BELL, FELL, FELL-KP.

Ma et al., "Deep Spike Learning With Local Classifiers" (IEEE TCYB 2023). The network is the
golden model's (:mod:`localsnn.golden.model`) in floating point: the same forward equations,
no rounding, so that trained weights export to golden with little loss.

**Forward**, per time step ``t`` and hidden layer ``l`` (input first; :mod:`.layers`)::

    u[t]   = d (u[t-1] - theta o[t-1]) + I(x[t])        eq. 2   (I: x @ w, or conv2d)
    o[t]   = [u[t] >= theta]                           eq. 3
    z[t]   = flatten(pool(o[t]))                       the layer's output (pool: conv only)
    u^a[t] = d^a (u^a[t-1] - theta^a o^a[t-1]) + z[t] @ w^a,   o^a[t] = [u^a[t] >= theta^a]

The next layer reads ``pool(o[t])``. The decision of a layer is the argmax of its classifier's
spike counts over the window; the network's is the last layer's.

**Loss** (eq. 4): ``L = sum_t L_t``, ``L_t = 1/(2B) sum_b ||y - o^a[t]||^2`` with ``y`` the
one-hot label at every step (the paper: "the target output neuron fires at every time step
while the others stay silent"), averaged over the batch ``B``. Every rule writes gradients of
this loss (or of its per-step terms) into ``.grad``; the optimizer applies them. ``train_step``
reports ``loss/<layer>`` = ``(1/T) sum_t L_t`` of each classifier and ``loss`` = their sum.

**Rules** (``delta^a = dL_t/du^a = (o^a - y) sigma'(u^a) / B``; ``w^a`` the classifier
weights, ``sigma'`` the surrogate):

* ``ell`` (eq. 5-7), closed form per step, no graph, memory independent of ``T``::

      dL_t/dw^a = z^T delta^a                                   eq. 5
      delta^l   = pool^T(delta^a (w^a)^T) * sigma'(u)          eq. 6 (du^a/do^l = w^a)
      dL_t/dw   = x^T delta^l  (conv: the convolution's weight adjoint)

* ``fell`` (eq. 12-14): as ELL with the presynaptic terms replaced by per-synapse eligibility
  traces ``e[t] = du[t]/dw``::

      e[t]   = c[t] e[t-1] + x[t],   c[t] = du[t]/du[t-1] = d (1 - theta sigma'(u[t-1]))   eq. 12
      e^a[t] = c^a[t] e^a[t-1] + z[t]
      dL_t/dw^a = sum_b e^a delta^a  (eq. 13),   dL_t/dw = sum_b e delta^l  (eq. 14)

  ``c`` includes the reset term through the surrogate, as golden's FELL does. The traces are
  per sample: ``B x fan_in x size`` for a dense layer, ``B x channels x (C_in K K) x positions``
  for a convolutional one (one trace per synapse of the unshared layer), plus ``B x features x
  classes`` for the classifier. Memory grows with synapses, not with ``T``; on a GPU the traces
  are checked against the free memory before they are allocated.
* ``fell-kp`` (eq. 15-16): FELL, the error carried back by a separate matrix ``B`` (same layout
  as ``w^a``) instead of ``w^a``; ``w^a`` and ``B`` get the same gradient plus the Kolen-Pollack
  decay ``lambda = options.kp_decay`` on each: ``g(w^a) = sum_b e^a delta^a + lambda w^a``,
  ``g(B) = sum_b e^a delta^a + lambda B``. Under SGD with rate ``eta`` this is eq. 15-16 with
  the paper's decay ``eta lambda``, and ``w^a - B`` shrinks by ``(1 - eta lambda)`` per update.
* ``bell`` (eq. 8-11): the exact gradient of each layer's local loss ``L`` over the window,
  by autograd through time (the reset term included); the layer's input is the layer below's
  output, detached. Keeps the window's state history (memory grows with ``T``).
* ``bptt``: the global baseline (the paper's BPTT*): the same forward, loss and surrogate, the
  last layer's classifier is the network's output and its loss is backpropagated through
  every layer and step. The other layers' classifiers learn their own local loss from their
  layer's detached output (probes for ``evaluate``; they never reach the hidden weights).

``options.update``: ``step`` applies the optimizer after every time step (ELL, FELL, FELL-KP:
the per-step gradient ``dL_t/dw``), ``sample`` sums the per-step gradients over the window and
steps once. ``bell`` and ``bptt`` have their gradient only after the backward pass over the
window, so they step once per window whatever ``update`` says.

**Initial weights**: uniform in ``[-b, b]``; with a spec, ``b`` is the layer's ``init`` (``scale``
or ``gain / sqrt(fan_in)``, the real bound golden's integer init uses); from an architecture
string, ``b = gain / sqrt(fan_in)`` (fan-in ``C_in K K`` for a convolution; PyTorch's default
bound for ``gain = 1``), the classifier's fan-in its ``features``. Drawn on the CPU from a
generator seeded with ``options.seed``: same seed, same weights.

``options.random_classifiers``: the classifiers keep their random initial weights (Ma Fig. 5's
"R" variants); the error still goes back through them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from localsnn.spec import NetworkSpec
from localsnn.train import registry
from localsnn.train.api import UPDATES, RuleOptions, load_float_weights
from localsnn.train.layers import (
    Conv,
    Dense,
    LearnerError,
    LIFParams,
    Surrogate,
    _Hidden,
    fell_factor,
    lif_step,
    make_surrogate,
    parse_arch,
    trace_contract,
)

#: the rules this module builds (their entries in :mod:`localsnn.train.registry`)
RULE_NAMES = tuple(registry.names(module=__name__))
#: rules that step once per window whatever ``options.update`` says (their memory is the window's)
WINDOW_RULES = tuple(registry.names(module=__name__, memory="window"))
#: rules that keep per-synapse eligibility traces
TRACE_RULES = tuple(registry.names(module=__name__, traces=True))


@dataclass
class LayerState:
    """One hidden layer's state between steps: potentials and spikes of the layer (``u``,
    ``o``) and its classifier (``ua``, ``oa``); FELL's eligibility traces ``e`` and ``ea``."""

    u: torch.Tensor
    o: torch.Tensor
    ua: torch.Tensor
    oa: torch.Tensor
    e: torch.Tensor | None = None
    ea: torch.Tensor | None = None


def _add_grad(p: nn.Parameter, g: torch.Tensor) -> None:
    """``p.grad += g`` (``p.grad = g`` when there is none); nothing for frozen parameters."""
    if not p.requires_grad:
        return
    if p.grad is None:
        p.grad = g.detach().clone()
    else:
        p.grad.add_(g)


class LIFLearner(nn.Module):
    """A network of hidden LIF layers with spiking local classifiers, and its rule.

    Implements :class:`localsnn.train.api.Learner`. ``layers`` are :class:`~.layers.Dense` or
    :class:`~.layers.Conv` modules; ``learn[l] = False`` keeps layer ``l`` (and its classifier)
    fixed.
    """

    def __init__(
        self,
        layers: list[_Hidden],
        rule: str,
        options: RuleOptions,
        timesteps: int,
        input_shape: tuple[int, ...],
        surrogate: Surrogate,
        learn: list[bool] | None = None,
    ) -> None:
        super().__init__()
        self.rule = rule
        self.options = options
        self.timesteps = timesteps
        self.input_shape = tuple(input_shape)
        self.classes = layers[-1].classes
        self.surrogate = surrogate
        self.layers = nn.ModuleList(layers)
        self.learn = list(learn) if learn is not None else [True] * len(layers)
        for layer, on in zip(self.layers, self.learn):
            if not on:
                for p in layer.parameters():
                    p.requires_grad_(False)
            elif options.random_classifiers:
                layer.clf_w.requires_grad_(False)

    # -- Learner interface ----------------------------------------------------------------------

    def layer_names(self) -> list[str]:
        return [f"layer{i}" for i in range(len(self.layers))]

    def describe(self) -> str:
        """The architecture, e.g. ``12c5-p2-64c5-p2-10``."""
        return "-".join([layer.describe() for layer in self.layers] + [str(self.classes)])

    def float_weights(self) -> list[dict[str, torch.Tensor]]:
        """Per hidden layer ``{"w": ..., "clf_w": (features, classes)}`` (detached copies).

        Dense layers: ``w`` input-major ``(fan_in, size)``, golden's layout (a dense layer after
        a convolution reads the pooled map flattened channel-major, ``(C, H, W)``). Conv layers:
        ``w`` is the kernel ``(out_channels, in_channels, k, k)``; golden has no convolutions.
        """
        return [{"w": layer.w.detach().clone(), "clf_w": layer.clf_w.detach().clone()} for layer in self.layers]

    def load_float_weights(self, weights: list[dict[str, torch.Tensor]]) -> None:
        """Set every layer's ``w`` and ``clf_w`` (shapes as :meth:`float_weights`)."""
        load_float_weights(self.layers, weights, ("w", "clf_w"))

    def train_step(self, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One window of ``T`` steps on the batch, learning as ``self.rule`` says (module
        docstring); ``x``: ``[T, B, *input_shape]``, ``y``: ``[B]`` class indices."""
        x, y = self._check_input(x, y)
        Y = torch.nn.functional.one_hot(y, self.classes).to(x.dtype)
        optimizer.zero_grad()
        if self.rule == "bell":
            losses = self._bell(x, Y)
        elif self.rule == "bptt":
            losses = self._bptt(x, Y)
        else:
            losses = self._online(x, Y, optimizer)
        if self.rule in WINDOW_RULES or self.options.update == "sample":
            optimizer.step()
            optimizer.zero_grad()
        T = x.shape[0]
        out = {f"loss/{name}": float(v) / T for name, v in zip(self.layer_names(), losses)}
        out["loss"] = sum(out.values())
        return out

    def evaluate(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's classifier spike counts ``[B, classes]`` over the window (no learning)."""
        return self._run(x, None)

    #: what :meth:`record` keeps of every layer at every step
    RECORDED = ("u", "o", "ua", "oa")

    def record(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Learning off: per hidden layer ``{"u", "o"}`` the potentials and spikes of its neurons
        ``[T, B, *map_shape]`` (a convolutional layer's spikes before pooling) and ``{"ua",
        "oa"}`` those of its classifier ``[T, B, classes]``, at every step (after the step's
        update: ``o[t] = [u[t] >= theta]``, eq. 2-3). The training loop draws ``o`` as the
        layer's raster (``loop.sample_rasters``); ``oa`` summed over ``T`` is :meth:`evaluate`."""
        rec: list[dict[str, list[torch.Tensor]]] = [{k: [] for k in self.RECORDED} for _ in self.layers]
        self._run(x, rec)
        return [{k: torch.stack(v) for k, v in r.items()} for r in rec]

    def _run(self, x: torch.Tensor, rec: list[dict[str, list[torch.Tensor]]] | None) -> list[torch.Tensor]:
        """The window without learning: the classifiers' spike counts; every step's states are
        appended to ``rec`` when given."""
        x, _ = self._check_input(x, None)
        states = self.new_state(x.shape[1], x)
        counts = [x.new_zeros(x.shape[1], self.classes) for _ in self.layers]
        with torch.no_grad():
            for t in range(x.shape[0]):
                inp = x[t]
                for i, layer in enumerate(self.layers):
                    st = states[i]
                    inp = self._forward_step(layer, st, inp)
                    counts[i] += st.oa
                    if rec is not None:
                        for k in self.RECORDED:
                            rec[i][k].append(getattr(st, k))
        return counts

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.evaluate(x)

    # -- the per-step core ----------------------------------------------------------------------

    def new_state(self, batch: int, like: torch.Tensor) -> list[LayerState]:
        """Zero state of every layer for a batch (dtype and device of ``like``)."""
        out = []
        for layer in self.layers:
            z = like.new_zeros(batch, *layer.map_shape)
            za = like.new_zeros(batch, self.classes)
            out.append(LayerState(z, z.clone(), za, za.clone()))
        return out

    def _forward_step(self, layer: _Hidden, st: LayerState, inp: torch.Tensor) -> torch.Tensor:
        """Eq. 2-3 for the layer and its classifier (no graph); updates ``st``, returns the
        layer's output ``pool(o[t])``."""
        st.u, st.o = lif_step(st.u, st.o, layer.current(inp), layer.neuron)
        out = layer.post(st.o)
        st.ua, st.oa = lif_step(st.ua, st.oa, out.flatten(1) @ layer.clf_w, layer.clf_neuron)
        return out

    @torch.no_grad()
    def online_step(self, index: int, st: LayerState, inp: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``index`` at one time step under ELL, FELL or FELL-KP: the forward pass, then
        the per-step gradient ``dL_t/dw`` (closed form, module docstring) added into ``.grad``.

        ``inp``: the layer's input at this step; ``Y``: one-hot targets ``[B, classes]``.
        Returns the layer's output and its classifier's ``L_t`` (eq. 4, batch mean; a 0-d
        tensor, so that a GPU need not synchronise every step).
        """
        layer = self.layers[index]
        sur = self.surrogate
        p, pa = layer.neuron, layer.clf_neuron
        learn = self.learn[index]
        fell = learn and self.rule in TRACE_RULES
        if fell:  # c = du[t]/du[t-1] from the previous potentials (eq. 12)
            c, ca = fell_factor(st.u, p, sur), fell_factor(st.ua, pa, sur)
        out = self._forward_step(layer, st, inp)
        z = out.flatten(1)
        B = inp.shape[0]
        err = st.oa - Y  # B dL_t/do^a (eq. 4)
        loss = 0.5 * err.pow(2).sum() / B
        if not learn:
            return out, loss
        da = err * sur(st.ua, pa.theta) / B  # delta^a = dL_t/do^a do^a/du^a (eq. 5, 7)
        gz = da @ layer.feedback_matrix().T  # ... du^a/do^l = w^a (eq. 6), or B (eq. 15-16)
        dl = layer.post_T(gz.reshape(out.shape)) * sur(st.u, p.theta)  # ... do^l/du^l (eq. 6, 7)
        if fell:
            if st.e is None:
                st.e, st.ea = layer.trace_new(B, inp), inp.new_zeros(B, layer.features, self.classes)
            layer.trace_step(st.e, c, inp)  # eq. 12, hidden layer
            st.ea.mul_(ca.unsqueeze(1)).add_(z.unsqueeze(2))  # eq. 12, classifier
            g_clf = trace_contract(st.ea, da)  # eq. 13
            g_w = layer.trace_grad(st.e, dl)  # eq. 14
        else:
            g_clf = z.T @ da  # eq. 5: du^a/dw^a = z
            g_w = layer.weight_grad(inp, dl)  # eq. 6: du/dw = x
        _add_grad(layer.w, g_w)
        if layer.fb is not None:  # Kolen-Pollack (eq. 15-16): the same change for w^a and B, each decayed
            lam = self.options.kp_decay
            _add_grad(layer.fb, g_clf + lam * layer.fb)
            g_clf = g_clf + lam * layer.clf_w
        _add_grad(layer.clf_w, g_clf)
        return out, loss

    # -- rules ----------------------------------------------------------------------------------

    def _online(self, x, Y, optimizer) -> list[torch.Tensor]:
        """ELL / FELL / FELL-KP over the window: every layer at step t, then (update="step")
        the optimizer applies the step's gradients; the next step sees the new weights."""
        states = self.new_state(x.shape[1], x)
        if self.rule in TRACE_RULES:
            self._check_trace_memory(x)
        losses = [x.new_zeros(()) for _ in self.layers]
        for t in range(x.shape[0]):
            inp = x[t]
            for i in range(len(self.layers)):
                inp, loss = self.online_step(i, states[i], inp, Y)
                losses[i] += loss
            if self.options.update == "step":
                optimizer.step()
                optimizer.zero_grad()
        return losses

    def _run_layer(self, layer: _Hidden, xs: torch.Tensor, Y: torch.Tensor):
        """BELL's forward of one layer over the window with the surrogate graph (eq. 2-3, the
        reset term kept). Returns (detached outputs ``[T, B, ...]``, local loss ``L``)."""
        sur = self.surrogate
        B = xs.shape[1]
        u = xs.new_zeros(B, *layer.map_shape)
        o = torch.zeros_like(u)
        ua = xs.new_zeros(B, self.classes)
        oa = torch.zeros_like(ua)
        outs = []
        loss = xs.new_zeros(())
        for t in range(xs.shape[0]):
            u, o = lif_step(u, o, layer.current(xs[t]), layer.neuron, sur)
            out = layer.post(o)
            ua, oa = lif_step(ua, oa, out.flatten(1) @ layer.clf_w, layer.clf_neuron, sur)
            loss = loss + 0.5 * (oa - Y).pow(2).sum() / B  # L_t (eq. 4)
            outs.append(out.detach())
        return torch.stack(outs), loss

    def _bell(self, x, Y) -> list[torch.Tensor]:
        """BELL: per layer, autograd through time of the local loss (eq. 8-11), input detached."""
        losses = []
        xs = x
        for layer, learn in zip(self.layers, self.learn):
            with torch.set_grad_enabled(learn):
                xs, loss = self._run_layer(layer, xs, Y)
            if loss.requires_grad:
                loss.backward()
            losses.append(loss.detach())
        return losses

    def _bptt(self, x, Y) -> list[torch.Tensor]:
        """Global BPTT of the last classifier's loss; earlier classifiers learn as probes."""
        sur = self.surrogate
        B = x.shape[1]
        last = len(self.layers) - 1
        with torch.enable_grad():
            states = self.new_state(B, x)
            losses = [x.new_zeros(()) for _ in self.layers]
            for t in range(x.shape[0]):
                inp = x[t]
                for i, layer in enumerate(self.layers):
                    st = states[i]
                    st.u, st.o = lif_step(st.u, st.o, layer.current(inp), layer.neuron, sur)
                    out = layer.post(st.o)
                    z = out.flatten(1) if i == last else out.flatten(1).detach()
                    st.ua, st.oa = lif_step(st.ua, st.oa, z @ layer.clf_w, layer.clf_neuron, sur)
                    losses[i] = losses[i] + 0.5 * (st.oa - Y).pow(2).sum() / B
                    inp = out
            total = sum(losses)
            if total.requires_grad:
                total.backward()
        return [v.detach() for v in losses]

    # -- checks ---------------------------------------------------------------------------------

    def _check_input(self, x, y):
        if not isinstance(x, torch.Tensor):
            raise LearnerError(f"x must be a torch.Tensor [T, B, *{self.input_shape}], not {type(x).__name__}")
        p = self.layers[0].w
        x = x.to(device=p.device, dtype=p.dtype)
        if x.dim() < 3 or x.shape[0] != self.timesteps or tuple(x.shape[2:]) != self.input_shape:
            raise LearnerError(
                f"x has shape {tuple(x.shape)}; this network takes [T, B, *input_shape] = "
                f"[{self.timesteps}, B, {', '.join(map(str, self.input_shape))}]"
            )
        if y is None:
            return x, None
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[1] or y.is_floating_point():
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise LearnerError(f"y must be integer labels of shape [B] = [{x.shape[1]}], not {got}")
        y = y.to(device=x.device, dtype=torch.int64)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.classes):
            raise LearnerError(f"labels must be in 0..{self.classes - 1}; got {int(y.min())}..{int(y.max())}")
        return x, y

    def trace_bytes(self, batch: int) -> int:
        """Bytes of FELL's eligibility traces for a batch (hidden and classifier traces)."""
        item = self.layers[0].w.element_size()
        n = sum(layer.trace_elements(batch) + batch * layer.features * self.classes for layer, on in zip(self.layers, self.learn) if on)
        return n * item

    def _check_trace_memory(self, x: torch.Tensor) -> None:
        if x.device.type != "cuda":
            return
        need = self.trace_bytes(x.shape[1])
        free, _total = torch.cuda.mem_get_info(x.device)
        if need > free:
            sizes = ", ".join(f"{n} ({layer.describe()}): {layer.trace_elements(x.shape[1]):,}" for n, layer in zip(self.layer_names(), self.layers))
            raise LearnerError(
                f"{self.rule}'s per-synapse eligibility traces need {need / 2**30:.1f} GiB for a batch of {x.shape[1]} "
                f"(trace elements per layer: {sizes}) but {x.device} has {free / 2**30:.1f} GiB free; "
                "use a smaller batch, or the rule ell or bell"
            )


# ---------------------------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------------------------


def _check_rule(rule: str) -> None:
    if rule not in RULE_NAMES:
        raise LearnerError(f"rule must be one of {', '.join(map(repr, RULE_NAMES))}, not {rule!r}")


def _check_options(rule: str, options: Any) -> RuleOptions:
    if options is None:
        return RuleOptions()
    if not isinstance(options, RuleOptions):
        raise LearnerError(f"options must be a RuleOptions, not {type(options).__name__}")
    if options.update not in UPDATES:
        raise LearnerError(f"update must be one of {', '.join(map(repr, UPDATES))}, not {options.update!r}")
    lam = options.kp_decay
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise LearnerError(f"kp_decay must be a number >= 0, not {lam!r}")
    if isinstance(options.seed, bool) or not isinstance(options.seed, int):
        raise LearnerError(f"seed must be an integer, not {options.seed!r}")
    if rule == "fell-kp" and options.random_classifiers:
        raise LearnerError("fell-kp aligns its feedback matrix with trainable classifiers; random_classifiers must be False")
    return options


def _surrogate(options: RuleOptions, kind: str, width: float) -> Surrogate:
    return make_surrogate(options.surrogate if options.surrogate is not None else kind, options.surrogate_width if options.surrogate_width is not None else width)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(spec: NetworkSpec, rule: str, options: RuleOptions | None = None) -> LIFLearner:
    """The float network of ``spec`` (dense LIF layers with spiking classifiers) with ``rule``.

    From the spec: sizes, ``timesteps``, each neuron's decay (the spec's quantized ``d``, the
    value golden multiplies by) and threshold, the layer's ``learn`` flag, the initial-weight
    bound (module docstring) and the surrogate kind and width (``options`` override them).
    The spec's own ``learning.rule``, formats and rounding are not used.
    """
    _check_rule(rule)
    options = _check_options(rule, options)
    if not isinstance(spec, NetworkSpec):
        raise LearnerError(f"spec must be a NetworkSpec, not {type(spec).__name__}")
    for i, ls in enumerate(spec.layers):
        if ls.neuron.model != "lif":
            raise LearnerError(f"layers[{i}].neuron.model is {ls.neuron.model!r}; rule {rule!r} runs 'lif' neurons (the decolle rule runs 'decolle' ones)")
        if ls.classifier.kind != "spiking":
            raise LearnerError(f"layers[{i}].classifier.kind is {ls.classifier.kind!r}; rule {rule!r} trains a 'spiking' classifier")
    sur = spec.learning.surrogate
    surrogate = _surrogate(options, sur.kind, sur.width)
    gen = _generator(options.seed)
    layers = []
    for i, ls in enumerate(spec.layers):
        fan_in = spec.fan_in(i)
        neuron = LIFParams(ls.neuron.alpha.value, ls.neuron.threshold)
        cn = ls.classifier.neuron
        clf_neuron = LIFParams(cn.alpha.value, cn.threshold)
        layers.append(
            Dense(
                (fan_in,),
                ls.size,
                spec.classes,
                neuron,
                clf_neuron,
                _bound(ls.init, fan_in),
                _bound(ls.classifier.init, ls.size),
                gen,
                feedback=rule == "fell-kp",
            )
        )
    return LIFLearner(layers, rule, options, spec.timesteps, (spec.inputs,), surrogate, [ls.learn for ls in spec.layers])


def _bound(init, fan_in: int) -> float:
    return init.scale if init.scale > 0 else init.gain / math.sqrt(fan_in)


def build_arch(
    arch: str,
    input_shape,
    timesteps: int,
    rule: str,
    options: RuleOptions | None = None,
    tau: float = 1.0,
    theta: float = 1.0,
    *,
    padding: str = "valid",
    gain: float = 1.0,
) -> LIFLearner:
    """A network from an architecture string such as ``12c5-p2-64c5-p2-10`` or ``800-10`` (Ma
    Table II notation: ``<C>c<K>`` convolution, ``p<K>`` average pooling, ``<N>`` dense, the last
    number the classes, which is every hidden layer's classifier size).

    Every neuron (layers and classifiers) has ``d = exp(-1/tau)`` and threshold ``theta`` (Ma
    Table IV: ``tau = 1``, ``theta = 1``); the surrogate is ``exp`` of width 1 (eq. 7) unless
    ``options`` say otherwise. ``padding``: ``valid`` or ``same`` (see
    :func:`~.layers.parse_arch`); ``gain``: initial weights uniform in ``+-gain/sqrt(fan_in)``.
    """
    _check_rule(rule)
    options = _check_options(rule, options)
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise LearnerError(f"timesteps must be a positive integer, not {timesteps!r}")
    for name, v in (("tau", tau), ("theta", theta), ("gain", gain)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise LearnerError(f"{name} must be a positive number, not {v!r}")
    plans, classes = parse_arch(arch, input_shape, padding)
    neuron = LIFParams(math.exp(-1.0 / tau), float(theta))
    surrogate = _surrogate(options, "exp", 1.0)
    gen = _generator(options.seed)
    layers: list[_Hidden] = []
    for plan in plans:
        feats = math.prod(plan.out_shape)
        if plan.kind == "conv":
            pad = (plan.kernel - 1) // 2 if padding == "same" else 0
            fan_in = plan.in_shape[0] * plan.kernel * plan.kernel
            layers.append(
                Conv(plan.in_shape, plan.size, plan.kernel, plan.pool, pad, classes, neuron, neuron, gain / math.sqrt(fan_in), gain / math.sqrt(feats), gen, feedback=rule == "fell-kp")
            )
        else:
            fan_in = math.prod(plan.in_shape)
            layers.append(Dense(plan.in_shape, plan.size, classes, neuron, neuron, gain / math.sqrt(fan_in), gain / math.sqrt(feats), gen, feedback=rule == "fell-kp"))
    return LIFLearner(layers, rule, options, timesteps, _input_shape(input_shape), surrogate)


def _input_shape(input_shape) -> tuple[int, ...]:
    return tuple(int(s) for s in input_shape)


#: constructors by rule name, each ``(spec, rule, options) -> Learner``
RULES = {name: build for name in RULE_NAMES}

__all__ = ["RULES", "RULE_NAMES", "LIFLearner", "LayerState", "LearnerError", "build", "build_arch"]
