"""Each learning rule, recomputed independently in float from the paper's equations.

The golden model works in integers. Here the same step is computed in float64 from the
equations of Ma et al. (ELL eq. 5-7, FELL eq. 12-14) and Kaiser et al. (DECOLLE eq. 4, 7-8),
using the golden model's recorded state as real numbers and the spec's constants as real
numbers, and the golden weight change must equal the float change quantized into the weight
format. The formats are chosen wide enough that no intermediate rounding happens (every value
is a dyadic rational that float64 holds exactly), so the comparison is exact where the final
rounding is deterministic (floor, nearest) and floor-or-ceil where it is stochastic.

The surrogate is the spec's lookup table: ``sigma'(u) = exp(-|u - theta|)`` evaluated at the
lower edge of its ``2**-step_frac`` bucket and rounded into the surrogate format, recomputed
here with ``math.exp``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from localsnn import spec as S
from localsnn.golden import Golden

F = S.FixedFormat


def sg_float(u: np.ndarray, theta: float, sur: S.SurrogateSpec) -> np.ndarray:
    """The spec's surrogate table as a float function (independent of golden's table code)."""
    out = np.zeros(len(u))
    for i, v in enumerate(u):
        k = math.floor(abs(v - theta) * 2**sur.step_frac)
        if k < sur.size:
            x = k / 2**sur.step_frac
            if sur.kind == "exp":
                f = math.exp(-x / sur.width)
            elif sur.kind == "rect":
                f = 1 / sur.width if x < sur.width / 2 else 0.0
            else:
                f = 1.0 if x <= sur.width / 2 else 0.0
            out[i] = min(math.floor(f * 2**sur.format.frac + 0.5), sur.format.max_int) / 2**sur.format.frac
    return out


def quantize(dw: np.ndarray, frac: int, mode: str) -> np.ndarray:
    scaled = dw * 2.0**frac
    if mode == "floor":
        return np.floor(scaled).astype(np.int64)
    return np.floor(scaled + 0.5).astype(np.int64)


def check_change(golden_dw, float_dw, frac, mode):
    """The golden change equals the float change quantized (or floor/ceil when stochastic)."""
    if mode == "stochastic":
        lo = np.floor(float_dw * 2.0**frac)
        hi = np.ceil(float_dw * 2.0**frac)
        assert np.all((golden_dw == lo) | (golden_dw == hi))
    else:
        np.testing.assert_array_equal(golden_dw, quantize(float_dw, frac, mode))


def lif_net(rule: str, rounding: str, *, timesteps: int, fell_trace: F | None = None, error: F | None = None, scale: float = 0.4) -> S.NetworkSpec:
    """6 inputs -> 5 LIF -> 3-class spiking classifier; formats wide enough to be exact."""
    wfmt = F(16, 8, rounding=rounding)
    neuron = S.NeuronSpec(tau=1.0, threshold=1.0, potential=F(40, 24), decay=F(4, 4, signed=False, rounding="nearest"))
    return S.NetworkSpec(
        name=f"exact-{rule}",
        inputs=6,
        classes=3,
        timesteps=timesteps,
        encoding=S.EncodingSpec(format=F(4, 4, signed=False, rounding="nearest")),
        learning=S.LearningSpec(
            rule=rule,
            lr_shift=3,
            error=error or F(40, 22, rounding="nearest"),
            trace=fell_trace or F(28, 20, rounding="nearest"),
            surrogate=S.SurrogateSpec(kind="exp", step_frac=4, size=128),
        ),
        layers=(
            S.LayerSpec(
                size=5,
                neuron=neuron,
                weight=wfmt,
                accumulator=40,
                init=S.InitSpec(scale=scale),
                classifier=S.ClassifierSpec(weight=wfmt, accumulator=40, neuron=neuron, init=S.InitSpec(scale=1.5 * scale)),
            ),
        ),
    )


def real(ints, fmt: F) -> np.ndarray:
    return np.asarray(ints, dtype=np.float64) / 2.0**fmt.frac


X_INT = np.array([15, 0, 9, 12, 3, 7])  # pixels already in u4.4


def run_recorded(spec: S.NetworkSpec, label: int, seed_params=None):
    g = Golden(spec, seed_params)
    w0 = g.params.copy()
    rec = g.run_sample(X_INT, label, record_weights=True)
    return g, w0, rec


@pytest.mark.parametrize("rounding", ["floor", "nearest", "stochastic"])
@pytest.mark.parametrize("label", [0, 2])
def test_ell_update_is_the_quantized_float_update(rounding, label):
    spec = lif_net("ell", rounding, timesteps=3, scale=1.0)
    layer = spec.layers[0]
    g, w0, rec = run_recorded(spec, label)
    eta = 2.0**-spec.learning.lr_shift
    sur = spec.learning.surrogate
    pot = layer.neuron.potential
    x = real(X_INT, spec.encoding.format)
    y = np.eye(spec.classes)[label]
    before = w0
    changed = changed_a = 0
    for t in range(spec.timesteps):
        after = rec.weights[t]
        L = rec.layers[0]
        u, o = real(L.potential[t], pot), L.spikes[t].astype(float)
        ua, oa = real(L.clf_potential[t], pot), L.clf_spikes[t].astype(float)
        wa = real(before.layers[0].clf_w, layer.classifier.weight)
        # eq. 5, 7: delta^a = dL/do^a * do^a/du^a = (o^a - y) * sigma'(u^a); du^a/dw^a = o^l
        da = (oa - y) * sg_float(ua, 1.0, sur)
        dwa = -eta * np.outer(o, da)
        # eq. 6: delta^l = sigma'(u^l) * sum_k w^a_ik delta^a_k; du^l/dw^l = x
        dl = sg_float(u, 1.0, sur) * (wa @ da)
        dw = -eta * np.outer(x, dl)
        gdw = after.layers[0].w - before.layers[0].w
        gdwa = after.layers[0].clf_w - before.layers[0].clf_w
        check_change(gdwa, dwa, layer.classifier.weight.frac, rounding)
        check_change(gdw, dw, layer.weight.frac, rounding)
        changed += int(np.count_nonzero(gdw))
        changed_a += int(np.count_nonzero(gdwa))
        before = after
    assert changed > 0 and changed_a > 0, "the test case must exercise nonzero updates of both blocks"
    assert rec.layers[0].spikes.any()
    assert rec.counters[0]["overflow_weight"] == rec.counters[0]["overflow_error"] == 0


@pytest.mark.parametrize("rounding", ["floor", "nearest"])
def test_fell_update_uses_the_forward_eligibility_trace(rounding):
    spec = lif_net("fell", rounding, timesteps=3, error=F(28, 22, rounding="nearest"), fell_trace=F(32, 24, rounding="nearest"), scale=1.0)
    layer = spec.layers[0]
    g, w0, rec = run_recorded(spec, 1)
    eta = 2.0**-spec.learning.lr_shift
    sur = spec.learning.surrogate
    pot = layer.neuron.potential
    d = layer.neuron.alpha.value  # the spec's quantized exp(-1/tau)
    x = real(X_INT, spec.encoding.format)
    y = np.eye(spec.classes)[1]
    L = rec.layers[0]
    e = np.zeros((spec.inputs, layer.size))
    ea = np.zeros((layer.size, spec.classes))
    u_prev = np.zeros(layer.size)
    ua_prev = np.zeros(spec.classes)
    before = w0
    changed = 0
    for t in range(spec.timesteps):
        u, o = real(L.potential[t], pot), L.spikes[t].astype(float)
        ua, oa = real(L.clf_potential[t], pot), L.clf_spikes[t].astype(float)
        # eq. 12: e[t] = du[t]/du[t-1] e[t-1] + du[t]/dw, du[t]/du[t-1] = d (1 - theta sigma'(u[t-1]))
        e = e * (d * (1 - sg_float(u_prev, 1.0, sur)))[None, :] + x[:, None]
        ea = ea * (d * (1 - sg_float(ua_prev, 1.0, sur)))[None, :] + o[:, None]
        wa = real(before.layers[0].clf_w, layer.classifier.weight)
        da = (oa - y) * sg_float(ua, 1.0, sur)
        dwa = -eta * ea * da[None, :]  # eq. 13
        dl = sg_float(u, 1.0, sur) * (wa @ da)
        dw = -eta * e * dl[None, :]  # eq. 14
        after = rec.weights[t]
        gdw = after.layers[0].w - before.layers[0].w
        gdwa = after.layers[0].clf_w - before.layers[0].clf_w
        check_change(gdwa, dwa, layer.classifier.weight.frac, rounding)
        check_change(gdw, dw, layer.weight.frac, rounding)
        if t > 0:  # from the second step on, the trace carries the past
            changed += int(np.count_nonzero(gdw))
        before, u_prev, ua_prev = after, u, ua
    assert changed > 0 and rec.layers[0].spikes.any()
    # at t = 1 the eligibility trace differs from ELL's x: the rules must not coincide
    ell = run_recorded(spec.with_rule("ell"), 1)[2]
    assert not np.array_equal(ell.weights[-1].layers[0].w, rec.weights[-1].layers[0].w)


def decolle_net(rounding: str, timesteps: int = 3, trace_order: str = "paper") -> S.NetworkSpec:
    neuron = S.NeuronSpec(
        model="decolle", tau=2.0, tau_syn=1.0, tau_ref=2.0, rho=0.5, threshold=0.0,
        potential=F(40, 20), decay=F(4, 4, signed=False, rounding="nearest"), trace=F(14, 12, signed=False), trace_order=trace_order,
    )
    return S.NetworkSpec(
        name="exact-decolle",
        inputs=6,
        classes=3,
        timesteps=timesteps,
        encoding=S.EncodingSpec(format=F(4, 4, signed=False, rounding="nearest")),
        learning=S.LearningSpec(rule="decolle", lr_shift=2, error=F(44, 25, rounding="nearest"), surrogate=S.SurrogateSpec(kind="boxcar", width=1.0, step_frac=4, size=16)),
        layers=(
            S.LayerSpec(
                size=5, neuron=neuron, weight=F(16, 8, rounding=rounding), accumulator=40, init=S.InitSpec(scale=0.5),
                classifier=S.ClassifierSpec(kind="random", weight=F(8, 8), accumulator=16, init=S.InitSpec(scale=0.25), feedback=F(12, 10, rounding="nearest")),
            ),
        ),
    )


@pytest.mark.parametrize("rounding, trace_order", [("floor", "paper"), ("nearest", "decolle-public"), ("stochastic", "paper"), ("stochastic", "decolle-public")])
def test_decolle_neuron_and_update_follow_eq_4_7_8(rounding, trace_order):
    spec = decolle_net(rounding, trace_order=trace_order)
    layer = spec.layers[0]
    n = layer.neuron
    g, w0, rec = run_recorded(spec, 2)
    eta = 2.0**-spec.learning.lr_shift
    sur = spec.learning.surrogate
    alpha, beta, gamma = n.alpha.value, n.beta.value, n.gamma.value
    x = real(X_INT, spec.encoding.format)
    G = real(w0.layers[0].clf_w, layer.classifier.weight)
    H = real(w0.layers[0].feedback, layer.classifier.feedback)
    target = np.eye(spec.classes)[2]
    P = np.zeros(spec.inputs)
    Q = np.zeros(spec.inputs)
    R = np.zeros(layer.size)
    L = rec.layers[0]
    before = w0
    changed = 0
    for t in range(spec.timesteps):
        W = real(before.layers[0].w, layer.weight)
        b = real(before.layers[0].bias, layer.weight)
        # eq. 4: U = sum_j W_ij P_j - rho R + b, S = [U > theta] (strict, docs/golden.md)
        U = P @ W - n.rho * R + b
        np.testing.assert_array_equal(real(L.potential[t], n.potential), U)
        Sp = (U > n.threshold).astype(float)
        np.testing.assert_array_equal(L.spikes[t], Sp)
        Y = Sp @ G
        np.testing.assert_array_equal(real(L.readout[t], layer.classifier.weight), Y)
        # eq. 8: error_i = sum_k H_ik (Y_k - Yhat_k); eq. 7: dW_ij = -eta error_i sigma'(U_i) P_j
        err = H @ (Y - target)
        delta = err * sg_float(U, n.threshold, sur)
        dW = -eta * np.outer(P, delta)
        db = -eta * delta  # the bias sees a constant presynaptic 1
        after = rec.weights[t]
        check_change(after.layers[0].w - before.layers[0].w, dW, layer.weight.frac, rounding)
        check_change(after.layers[0].bias - before.layers[0].bias, db, layer.weight.frac, rounding)
        changed += int(np.count_nonzero(after.layers[0].w - before.layers[0].w))
        # eq. 4 traces: P's update takes the Q of this step before its update (the paper), or after
        # it (the authors' public code: the input reaches U one step earlier)
        Q_new = beta * Q + (1 - beta) * x
        P = alpha * P + (1 - alpha) * (Q if trace_order == "paper" else Q_new)
        Q, R = Q_new, gamma * R + (1 - gamma) * Sp
        before = after
    assert changed > 0


def test_lif_forward_follows_eq_2_3_exactly():
    spec = lif_net("none", "floor", timesteps=3, scale=1.2)
    layer = spec.layers[0]
    g = Golden(spec)
    rec = g.run_sample(X_INT, 0)
    d = layer.neuron.alpha.value
    W = real(g.params.layers[0].w, layer.weight)
    Wa = real(g.params.layers[0].clf_w, layer.classifier.weight)
    x = real(X_INT, spec.encoding.format)
    u = np.zeros(layer.size)
    o = np.zeros(layer.size)
    ua = np.zeros(spec.classes)
    oa = np.zeros(spec.classes)
    for t in range(spec.timesteps):
        u = d * (u - 1.0 * o) + x @ W  # eq. 2
        o = (u >= 1.0).astype(float)  # eq. 3
        ua = d * (ua - oa) + o @ Wa
        oa = (ua >= 1.0).astype(float)
        L = rec.layers[0]
        np.testing.assert_array_equal(real(L.potential[t], layer.neuron.potential), u)
        np.testing.assert_array_equal(L.spikes[t], o)
        np.testing.assert_array_equal(real(L.clf_potential[t], layer.neuron.potential), ua)
        np.testing.assert_array_equal(L.clf_spikes[t], oa)
    assert rec.layers[0].spikes.any() and rec.layers[0].clf_spikes.any(), "the case must make neurons fire"
    assert (rec.layers[0].spikes[1:] < rec.layers[0].spikes[:-1]).any() or rec.layers[0].spikes.sum() > 1


def test_narrow_formats_stay_within_the_rounding_bound():
    """With the shipped digits spec (error rounded into s16.12), ELL's change differs from the
    exact float change by less than the error format's rounding, carried through eta * x."""
    spec = S.load("digits")
    spec = S.NetworkSpec(**{**spec.__dict__, "layers": (S.LayerSpec(**{**spec.layers[0].__dict__, "weight": F(16, 12, rounding="floor")}),)})
    layer = spec.layers[0]
    g = Golden(spec)
    from localsnn.data import load

    ds = load("digits")
    x_int = g.quantize(ds.x_train[0], ds.max_value)
    w0 = g.params.copy()
    rec = g.run_sample(x_int, int(ds.y_train[0]), record_weights=True)
    eta = 2.0**-spec.learning.lr_shift
    sur = spec.learning.surrogate
    pot = layer.neuron.potential
    x = real(x_int, spec.encoding.format)
    y = np.eye(10)[int(ds.y_train[0])]
    L = rec.layers[0]
    before = w0
    e_lsb = 2.0**-spec.learning.error.frac
    for t in range(spec.timesteps):
        wa = real(before.layers[0].clf_w, layer.classifier.weight)
        da = (L.clf_spikes[t] - y) * sg_float(real(L.clf_potential[t], pot), 1.0, sur)
        dl = sg_float(real(L.potential[t], pot), 1.0, sur) * (wa @ da)
        dw = -eta * np.outer(x, dl) * 2.0**layer.weight.frac
        gdw = rec.weights[t].layers[0].w - before.layers[0].w
        bound = 1 + eta * np.outer(x, np.full(layer.size, e_lsb / 2)) * 2.0**layer.weight.frac
        assert np.all(np.abs(gdw - dw) <= bound)
        before = rec.weights[t]
