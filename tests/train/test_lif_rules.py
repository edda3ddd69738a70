"""The float LIF learners (train/lif.py) against independent computations of Ma et al.'s rules.

The references here do not use the learner's code: the forward pass is rewritten from eq. 2-3
with a straight-through spike ``o = H(v) + A(v) - A(v).detach()`` (``A`` an antiderivative of
the surrogate, so autograd and forward-mode AD see ``do/du = sigma'(u)``), and the rules are
the paper's equations: ELL eq. 5-7 in numpy, BELL as autograd of the local loss eq. 4, FELL's
traces (eq. 12) as forward-mode derivatives ``du[t]/dw`` from ``torch.func.jvp``.
Everything runs in float64 on the CPU, on nets small enough to take well under a second.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from localsnn import data
from localsnn import spec as S
from localsnn.errors import LocalsnnError
from localsnn.train.api import Learner, RuleOptions
from localsnn.train.layers import LearnerError, parse_arch
from localsnn.train.lif import RULE_NAMES, RULES, build, build_arch

TOL = {"rtol": 1e-10, "atol": 1e-12}
#: torch.func.jvp scripts its decompositions with the deprecated torch.jit.script (torch's own warning)
JIT_WARNING = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"


class Recorder(torch.optim.SGD):
    """SGD that records every parameter's ``.grad`` (by name) each time it steps."""

    def __init__(self, model, lr=0.0):
        self.names = {id(p): n for n, p in model.named_parameters()}
        super().__init__([p for p in model.parameters() if p.requires_grad], lr=lr)
        self.steps: list[dict[str, torch.Tensor]] = []

    def step(self, closure=None):
        self.steps.append({self.names[id(p)]: p.grad.clone() for g in self.param_groups for p in g["params"] if p.grad is not None})
        return super().step(closure)


# ---------------------------------------------------------------------------------------------
# Independent reference model
# ---------------------------------------------------------------------------------------------


def antiderivative(v, kind="exp", width=1.0):
    if kind == "exp":
        return torch.sign(v) * width * (1 - torch.exp(-v.abs() / width))
    if kind == "rect":
        return v.clamp(-width / 2, width / 2) / width
    return v.clamp(-width / 2, width / 2)


def st_spike(u, theta, kind="exp", width=1.0):
    v = u - theta
    a = antiderivative(v, kind, width)
    return (v >= 0).to(u.dtype) + (a - a.detach())


def ref_layer(xs, current, post, Wa, d, theta, Y, kind="exp", width=1.0):
    """Eq. 2-3 for a layer and its classifier over the window, straight-through spikes.

    Returns (potentials, outputs, classifier potentials, local loss eq. 4 / B)."""
    B = xs.shape[1]
    us, outs, uas = [], [], []
    u = o = ua = oa = None
    loss = 0
    for t in range(xs.shape[0]):
        i = current(xs[t])
        u = i if u is None else d * (u - theta * o) + i
        o = st_spike(u, theta, kind, width)
        out = post(o)
        ia = out.flatten(1) @ Wa
        ua = ia if ua is None else d * (ua - theta * oa) + ia
        oa = st_spike(ua, theta, kind, width)
        loss = loss + 0.5 * ((oa - Y) ** 2).sum() / B
        us.append(u)
        outs.append(out)
        uas.append(ua)
    return torch.stack(us), torch.stack(outs), torch.stack(uas), loss


def layer_fns(layer):
    """The reference's own current and pooling functions for a learner layer's shape."""
    if layer.kind == "fc":
        return (lambda W: lambda x: x.flatten(1) @ W), (lambda o: o)
    pad, pool = layer.padding, layer.pool
    return (lambda W: lambda x: F.conv2d(x, W, padding=pad)), ((lambda o: F.avg_pool2d(o, pool)) if pool > 1 else (lambda o: o))


def make(arch, shape, rule, T=6, seed=3, gain=2.5, **opts):
    """A float64 learner whose weights lean positive (so that 20-60 % of neurons fire), random
    inputs in [0, 1) ``[T, 3, *shape]`` and labels."""
    m = build_arch(arch, shape, T, rule, RuleOptions(seed=seed, **opts), gain=gain).double()
    with torch.no_grad():
        for layer in m.layers:
            layer.w.add_(0.3 * gain / math.sqrt(layer.fan_in))
            layer.clf_w.add_(0.3 * gain / math.sqrt(layer.features))
            if layer.fb is not None:
                layer.fb.add_(0.3 * gain / math.sqrt(layer.features))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(T, 3, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, m.classes, (3,), generator=g)
    return m, x, y


def onehot(y, classes):
    return F.one_hot(y, classes).double()


def assert_active(spikes, what):
    """The test means something only when neurons both spike and stay silent."""
    rate = float(spikes.detach().double().mean())
    assert 0.02 < rate < 0.98, f"{what}: firing rate {rate:.3f}; pick another seed or gain"


# ---------------------------------------------------------------------------------------------
# BELL: exact local gradient = autograd BPTT of the local loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch,shape,kind",
    [("7-6-4", (5,), "exp"), ("7-6-4", (5,), "rect"), ("7-6-4", (5,), "boxcar"), ("2c3-p2-5-4", (1, 7, 7), "exp")],
)
def test_bell_equals_autograd_of_local_loss(arch, shape, kind):
    m, x, y = make(arch, shape, "bell", surrogate=kind, surrogate_width=1.5)
    Y = onehot(y, m.classes)
    opt = Recorder(m)
    report = m.train_step(x, y, opt)
    (got,) = opt.steps
    assert set(report) == {"loss", "loss/layer0", "loss/layer1"}
    assert report["loss"] == pytest.approx(report["loss/layer0"] + report["loss/layer1"])
    xs = x
    for i, layer in enumerate(m.layers):
        W = layer.w.detach().clone().requires_grad_(True)
        Wa = layer.clf_w.detach().clone().requires_grad_(True)
        cur, post = layer_fns(layer)
        us, outs, _, loss = ref_layer(xs, cur(W), post, Wa, math.exp(-1), 1.0, Y, kind, 1.5)
        assert_active(us >= 1, f"layer{i}")
        assert report[f"loss/layer{i}"] == pytest.approx(float(loss.detach()) / x.shape[0], rel=1e-12)  # (1/T) sum_t L_t
        gw, ga = torch.autograd.grad(loss, (W, Wa))
        assert gw.abs().max() > 0 and ga.abs().max() > 0
        torch.testing.assert_close(got[f"layers.{i}.w"], gw, **TOL)
        torch.testing.assert_close(got[f"layers.{i}.clf_w"], ga, **TOL)
        xs = outs.detach()


def test_bptt_backpropagates_the_last_classifier_through_every_layer():
    m, x, y = make("7-6-4", (5,), "bptt")
    Y = onehot(y, m.classes)
    opt = Recorder(m)
    m.train_step(x, y, opt)
    (got,) = opt.steps
    W0, W1 = (m.layers[i].w.detach().clone().requires_grad_(True) for i in range(2))
    A0, A1 = (m.layers[i].clf_w.detach().clone().requires_grad_(True) for i in range(2))
    d = math.exp(-1)
    _, out0, _, loss0 = ref_layer(x, lambda v: v @ W0, lambda o: o, A0, d, 1.0, Y)
    us1, _, _, loss1 = ref_layer(out0, lambda v: v @ W1, lambda o: o, A1, d, 1.0, Y)  # not detached
    assert_active(us1 >= 1, "layer1")
    g = torch.autograd.grad(loss1, (W0, W1, A1))
    torch.testing.assert_close(got["layers.0.w"], g[0], **TOL)
    torch.testing.assert_close(got["layers.1.w"], g[1], **TOL)
    torch.testing.assert_close(got["layers.1.clf_w"], g[2], **TOL)
    # the first classifier is a probe: its own local loss, its layer's output detached
    torch.testing.assert_close(got["layers.0.clf_w"], torch.autograd.grad(loss0, A0)[0], **TOL)


# ---------------------------------------------------------------------------------------------
# ELL: the closed form of eq. 5-7
# ---------------------------------------------------------------------------------------------


def test_ell_equals_closed_form_eq_5_7():
    """Two dense layers, SGD applied every step (so later steps see changed weights), every
    step's gradient and the final weights against eq. 5-7 in numpy."""
    lr = 0.7
    m, x, y = make("7-6-4", (5,), "ell", T=8)
    Ws = [layer.w.detach().numpy().copy() for layer in m.layers]
    As = [layer.clf_w.detach().numpy().copy() for layer in m.layers]
    opt = Recorder(m, lr=lr)
    m.train_step(x, y, opt)
    X = x.numpy()
    Y = np.eye(m.classes)[y.numpy()]
    B = X.shape[1]
    d, th = math.exp(-1), 1.0

    def sg(u):
        return np.exp(-np.abs(u - th))  # eq. 7

    state = [{"u": np.zeros((B, W.shape[1])), "o": np.zeros((B, W.shape[1])), "ua": np.zeros((B, 4)), "oa": np.zeros((B, 4))} for W in Ws]
    fired = []
    for t in range(X.shape[0]):
        inp = X[t]
        grads = []
        for i in range(2):
            s = state[i]
            s["u"] = d * (s["u"] - th * s["o"]) + inp @ Ws[i]  # eq. 2
            s["o"] = (s["u"] >= th).astype(float)  # eq. 3
            s["ua"] = d * (s["ua"] - th * s["oa"]) + s["o"] @ As[i]
            s["oa"] = (s["ua"] >= th).astype(float)
            delta_a = (s["oa"] - Y) * sg(s["ua"]) / B  # dL/do^a * do^a/du^a (eq. 4, 5, 7)
            g_a = s["o"].T @ delta_a  # eq. 5: du^a/dw^a = o
            delta_l = (delta_a @ As[i].T) * sg(s["u"])  # eq. 6: du^a/do^l = w^a, do/du = sigma'
            g_w = inp.T @ delta_l  # eq. 6: du/dw = x
            grads.append((g_w, g_a))
            fired.append(s["o"].mean())
            inp = s["o"]
        rec = opt.steps[t]
        for i, (g_w, g_a) in enumerate(grads):
            np.testing.assert_allclose(rec[f"layers.{i}.w"].numpy(), g_w, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(rec[f"layers.{i}.clf_w"].numpy(), g_a, rtol=1e-9, atol=1e-12)
            Ws[i] = Ws[i] - lr * g_w
            As[i] = As[i] - lr * g_a
    assert len(opt.steps) == X.shape[0]
    assert 0.02 < np.mean(fired) < 0.98
    for i, layer in enumerate(m.layers):
        np.testing.assert_allclose(layer.w.detach().numpy(), Ws[i], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(layer.clf_w.detach().numpy(), As[i], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("arch,shape", [("3c3-p2-4", (2, 7, 7)), ("3c3-5-4", (1, 6, 6)), ("7-6-4", (5,))])
def test_ell_step_equals_one_step_autograd(arch, shape):
    """ELL's explicit adjoints (convolution weight gradient, pooling transpose) equal autograd
    of the per-step loss L_t through one step, with the previous state and the input detached."""
    m, x, y = make(arch, shape, "ell")
    Y = onehot(y, m.classes)
    layer = m.layers[0]
    st = m.new_state(x.shape[1], x)[0]
    cur, post = layer_fns(layer)
    d = math.exp(-1)
    spikes = []
    for t in range(x.shape[0]):
        u0, o0, ua0, oa0 = st.u.clone(), st.o.clone(), st.ua.clone(), st.oa.clone()
        for p in m.parameters():
            p.grad = None
        m.online_step(0, st, x[t], Y)
        W = layer.w.detach().clone().requires_grad_(True)
        Wa = layer.clf_w.detach().clone().requires_grad_(True)
        u = d * (u0 - o0) + cur(W)(x[t])
        o = st_spike(u, 1.0)
        ua = d * (ua0 - oa0) + post(o).flatten(1) @ Wa
        loss = 0.5 * ((st_spike(ua, 1.0) - Y) ** 2).sum() / x.shape[1]
        gw, ga = torch.autograd.grad(loss, (W, Wa))
        torch.testing.assert_close(layer.w.grad, gw, **TOL)
        torch.testing.assert_close(layer.clf_w.grad, ga, **TOL)
        spikes.append(st.o)
    assert_active(torch.stack(spikes), "layer0")


# ---------------------------------------------------------------------------------------------
# FELL: eligibility traces are forward-mode derivatives du[t]/dw
# ---------------------------------------------------------------------------------------------


def _traces(m, x, y, index=0):
    """Run layer ``index`` (inputs from the layers below) under FELL; the traces at every step."""
    Y = onehot(y, m.classes)
    states = m.new_state(x.shape[1], x)
    es, eas, inputs, outs = [], [], [], []
    for t in range(x.shape[0]):
        inp = x[t]
        for i in range(index + 1):
            if i == index:
                inputs.append(inp)
            inp, _ = m.online_step(i, states[i], inp, Y)
        outs.append(inp)
        es.append(states[index].e.clone())
        eas.append(states[index].ea.clone())
    return torch.stack(es), torch.stack(eas), torch.stack(inputs), torch.stack(outs)


@pytest.mark.filterwarnings(JIT_WARNING)
@pytest.mark.parametrize("index", [0, 1])
def test_fell_dense_traces_equal_jvp(index):
    m, x, y = make("5-6-4", (4,), "fell", T=7)
    es, eas, xs, _ = _traces(m, x, y, index)
    layer = m.layers[index]
    d = math.exp(-1)
    W0, Wa0 = layer.w.detach(), layer.clf_w.detach()
    dummy = torch.zeros(x.shape[1], m.classes, dtype=torch.float64)

    def potentials(W):
        return ref_layer(xs, lambda v: v @ W, lambda o: o, Wa0, d, 1.0, dummy)[0]

    def clf_potentials(Wa):
        return ref_layer(xs, lambda v: v @ W0, lambda o: o, Wa, d, 1.0, dummy)[2]

    us = potentials(W0)
    assert_active(us >= 1, f"layer{index}")
    fan_in, size = W0.shape
    for j in range(fan_in):
        for i in range(size):
            tangent = torch.zeros_like(W0)
            tangent[j, i] = 1
            _, du = torch.func.jvp(potentials, (W0,), (tangent,))  # du[t, b, :]/dw_ji
            torch.testing.assert_close(es[:, :, j, i], du[:, :, i], **TOL)
            assert torch.all(du[:, :, [k for k in range(size) if k != i]] == 0)
    assert es.abs().max() > 0
    # the classifier's traces e^a[t] = du^a[t]/dw^a (the layer's spikes do not depend on w^a)
    for i in range(size):
        for k in range(m.classes):
            tangent = torch.zeros_like(Wa0)
            tangent[i, k] = 1
            _, dua = torch.func.jvp(clf_potentials, (Wa0,), (tangent,))
            torch.testing.assert_close(eas[:, :, i, k], dua[:, :, k], **TOL)


@pytest.mark.filterwarnings(JIT_WARNING)
def test_fell_conv_traces_equal_jvp():
    m, x, y = make("2c3-p2-4", (2, 6, 6), "fell", T=5)
    es, _, xs, _ = _traces(m, x, y, 0)
    layer = m.layers[0]
    d = math.exp(-1)
    W0 = layer.w.detach()
    dummy = torch.zeros(x.shape[1], m.classes, dtype=torch.float64)

    def potentials(W):
        return ref_layer(xs, lambda v: F.conv2d(v, W), lambda o: F.avg_pool2d(o, 2), layer.clf_w.detach(), d, 1.0, dummy)[0]

    us = potentials(W0)
    assert_active(us >= 1, "layer0")
    T, B = xs.shape[:2]
    C, Cin, K, _ = W0.shape
    for c in range(C):
        for q in range(Cin * K * K):
            tangent = torch.zeros_like(W0)
            tangent.view(C, -1)[c, q] = 1
            _, du = torch.func.jvp(potentials, (W0,), (tangent,))  # (T, B, C, H, W)
            torch.testing.assert_close(es[:, :, c, q, :], du[:, :, c].reshape(T, B, -1), **TOL)
            assert torch.all(du[:, :, [k for k in range(C) if k != c]] == 0)


def test_fell_gradient_is_trace_times_local_error():
    """Eq. 13-14: the step's gradient is sum_b e * delta with ELL's delta."""
    m, x, y = make("5-6-4", (4,), "fell", T=5)
    Y = onehot(y, m.classes)
    layer = m.layers[0]
    st = m.new_state(x.shape[1], x)[0]
    for t in range(x.shape[0]):
        for p in m.parameters():
            p.grad = None
        m.online_step(0, st, x[t], Y)
        B = x.shape[1]
        da = (st.oa - Y) * torch.exp(-(st.ua - 1).abs()) / B
        dl = (da @ layer.clf_w.detach().T) * torch.exp(-(st.u - 1).abs())
        torch.testing.assert_close(layer.w.grad, torch.einsum("bji,bi->ji", st.e, dl), **TOL)
        torch.testing.assert_close(layer.clf_w.grad, torch.einsum("bik,bk->ik", st.ea, da), **TOL)


def test_fell_kp_feedback_matrix():
    """FELL-KP (eq. 15-16): B replaces w^a in the hidden error; w^a and B get the same change
    plus lambda times themselves; with B = w^a and lambda = 0 it is FELL."""
    lam = 0.05
    kp, x, y = make("5-6-4", (4,), "fell-kp", kp_decay=lam)
    fell, _, _ = make("5-6-4", (4,), "fell")
    layer = kp.layers[0]
    assert not torch.equal(layer.fb, layer.clf_w)
    a, b = Recorder(kp), Recorder(fell)
    kp.train_step(x, y, a)
    fell.train_step(x, y, b)
    for got, ref in zip(a.steps, b.steps):
        torch.testing.assert_close(got["layers.0.clf_w"] - lam * layer.clf_w, got["layers.0.fb"] - lam * layer.fb, **TOL)
    assert any(not torch.allclose(g["layers.0.w"], r["layers.0.w"]) for g, r in zip(a.steps, b.steps))
    kp0, _, _ = make("5-6-4", (4,), "fell-kp", kp_decay=0.0)
    with torch.no_grad():
        kp0.layers[0].fb.copy_(kp0.layers[0].clf_w)
    c = Recorder(kp0)
    kp0.train_step(x, y, c)
    for got, ref in zip(c.steps, b.steps):
        for name in ("layers.0.w", "layers.0.clf_w"):
            torch.testing.assert_close(got[name], ref[name], **TOL)
        torch.testing.assert_close(got["layers.0.fb"], ref["layers.0.clf_w"], **TOL)


def test_fell_kp_aligns_feedback_under_sgd():
    """Kolen-Pollack: w^a - B shrinks by (1 - eta lambda) per update under SGD."""
    lr, lam = 0.5, 0.2
    m, x, y = make("5-6-4", (4,), "fell-kp", kp_decay=lam)
    layer = m.layers[0]
    gap0 = (layer.clf_w - layer.fb).detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    m.train_step(x, y, opt)
    torch.testing.assert_close((layer.clf_w - layer.fb).detach(), gap0 * (1 - lr * lam) ** x.shape[0], **TOL)


# ---------------------------------------------------------------------------------------------
# update = "sample", determinism, inference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule,arch,shape",
    [("ell", "7-6-4", (5,)), ("fell", "7-6-4", (5,)), ("fell-kp", "7-6-4", (5,)), ("ell", "2c3-p2-4", (1, 6, 6)), ("fell", "2c3-p2-4", (1, 6, 6))],
)
def test_sample_update_is_the_sum_of_the_step_updates(rule, arch, shape):
    m, x, y = make(arch, shape, rule, update="step")
    s, _, _ = make(arch, shape, rule, update="sample")
    a, b = Recorder(m), Recorder(s)
    m.train_step(x, y, a)
    s.train_step(x, y, b)
    assert len(a.steps) == x.shape[0] and len(b.steps) == 1
    for name, g in b.steps[0].items():
        total = sum(step[name] for step in a.steps)
        assert total.abs().max() > 0, name
        torch.testing.assert_close(g, total, **TOL)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_same_seed_same_result(rule):
    def run(seed):
        m = build_arch("2c3-p2-6-4", (1, 6, 6), 4, rule, RuleOptions(seed=seed), gain=2.0)
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            m.train_step(torch.rand(4, 5, 1, 6, 6, generator=g), torch.randint(0, 4, (5,), generator=g), opt)
        return [t for d in m.float_weights() for t in d.values()]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_evaluate_counts_classifier_spikes():
    m, x, y = make("7-6-4", (5,), "ell")
    counts = m.evaluate(x)
    assert [tuple(c.shape) for c in counts] == [(3, 4), (3, 4)]
    Y = onehot(y, 4)
    states = m.new_state(3, x)
    total = torch.zeros(3, 4, dtype=torch.float64)
    for t in range(x.shape[0]):
        inp = x[t]
        for i in range(2):
            inp, _ = m.online_step(i, states[i], inp, Y)
        total += states[1].oa
    torch.testing.assert_close(counts[1], total)
    assert m.layer_names() == ["layer0", "layer1"]
    assert m.describe() == "7-6-4"


# ---------------------------------------------------------------------------------------------
# Specs, weights, options
# ---------------------------------------------------------------------------------------------


def test_build_from_spec_takes_its_neurons_and_weights_layout():
    spec = S.load("digits")
    m = RULES["fell"](spec, "fell", RuleOptions())
    assert isinstance(m, Learner)
    assert m.rule == "fell" and m.timesteps == spec.timesteps and m.input_shape == (64,)
    n = spec.layers[0].neuron
    assert m.layers[0].neuron.decay == n.alpha.value and m.layers[0].neuron.theta == n.threshold
    (w,) = m.float_weights()
    assert w["w"].shape == (64, 64) and w["clf_w"].shape == (64, 10)
    assert float(w["w"].abs().max()) <= spec.layers[0].init.scale
    assert m.surrogate.kind == "exp" and m.surrogate.width == 1.0
    assert build(spec, "ell", RuleOptions(surrogate="rect", surrogate_width=0.5)).surrogate == ("rect", 0.5)


def test_frozen_layers_and_random_classifiers_do_not_learn():
    spec = S.load("digits")
    two = replace(spec, layers=(spec.layers[0], replace(spec.layers[0], learn=False)))
    m = build(two, "ell", RuleOptions())
    before = [t.clone() for d in m.float_weights() for t in d.values()]
    x, y = torch.rand(10, 8, 64), torch.randint(0, 10, (8,))
    m.train_step(x, y, torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1.0))
    after = [t for d in m.float_weights() for t in d.values()]
    assert not torch.equal(before[0], after[0])
    assert torch.equal(before[2], after[2]) and torch.equal(before[3], after[3])
    r = build(spec, "fell", RuleOptions(random_classifiers=True))
    clf = r.layers[0].clf_w.detach().clone()
    w = r.layers[0].w.detach().clone()
    r.train_step(x, y, torch.optim.SGD([p for p in r.parameters() if p.requires_grad], lr=1.0))
    assert torch.equal(r.layers[0].clf_w, clf) and not torch.equal(r.layers[0].w, w)


def test_arch_shapes():
    plans, classes = parse_arch("12c5-p2-64c5-p2-10", (1, 28, 28))
    assert classes == 10
    assert [(p.kind, p.out_shape) for p in plans] == [("conv", (12, 12, 12)), ("conv", (64, 4, 4))]
    plans, _ = parse_arch("12c5-p2-64c5-p2-10", (1, 28, 28), padding="same")
    assert [p.out_shape for p in plans] == [(12, 14, 14), (64, 7, 7)]
    plans, _ = parse_arch("32c5-p2-64c5-p2-1024-10", (1, 28, 28))
    assert [p.out_shape for p in plans] == [(32, 12, 12), (64, 4, 4), (1024,)]
    m = build_arch("12c5-p2-64c5-p2-10", (1, 28, 28), 2, "ell", RuleOptions())
    assert m.describe() == "12c5-p2-64c5-p2-10"
    assert [tuple(d["clf_w"].shape) for d in m.float_weights()] == [(1728, 10), (1024, 10)]
    assert tuple(m.layers[1].w.shape) == (64, 12, 5, 5)


@pytest.mark.parametrize(
    "arch,shape,match",
    [
        ("", (784,), "non-empty"),
        ("800-x-10", (784,), r"token 2 'x' is not a layer; allowed: layers separated by '-': '<N>' a fully connected"),
        ("800-10-p2", (784,), "last token must be the number of classes, not 'p2'"),
        ("10", (784,), "no hidden layer"),
        ("800-1", (784,), "at least 2"),
        ("p2-12c5-10", (1, 28, 28), "pooling must follow a convolutional layer"),
        ("12c5-p2-p2-10", (1, 28, 28), "pooling must follow a convolutional layer"),
        ("100-12c5-10", (1, 28, 28), "cannot follow a fully connected one"),
        ("12c5-10", (784,), r"needs input_shape \(channels, height, width\)"),
        ("12c5-64c30-10", (1, 28, 28), "a 30x30 kernel does not fit its 24x24 input"),
        ("12c5-p40-10", (1, 28, 28), "window must fit"),
        ("0-10", (784,), "at least 1 neuron"),
        ("12c0-10", (1, 28, 28), "kernel size must be at least 1"),
        ("800-10", (0,), "input_shape must be a tuple of positive integers"),
    ],
)
def test_bad_arch_strings_say_what_is_wrong(arch, shape, match):
    with pytest.raises(LearnerError, match=match):
        build_arch(arch, shape, 4, "ell", RuleOptions())


def test_bad_rules_and_options_say_what_is_allowed():
    spec = S.load("digits")
    with pytest.raises(LearnerError, match=r"rule must be one of 'bptt', 'ell', 'bell', 'fell', 'fell-kp', not 'elll'"):
        build_arch("10-4", (3,), 2, "elll", RuleOptions())
    with pytest.raises(LearnerError, match=r"rule must be one of .* not 'decolle'"):
        build(spec, "decolle", RuleOptions())
    with pytest.raises(LearnerError, match=r"update must be one of 'step', 'sample', not 'epoch'"):
        build(spec, "ell", RuleOptions(update="epoch"))
    with pytest.raises(LearnerError, match=r"surrogate must be one of 'exp', 'rect', 'boxcar', not 'sigmoid'"):
        build(spec, "ell", RuleOptions(surrogate="sigmoid"))
    with pytest.raises(LearnerError, match="surrogate_width must be a positive number"):
        build(spec, "ell", RuleOptions(surrogate_width=0.0))
    with pytest.raises(LearnerError, match="kp_decay must be a number >= 0"):
        build(spec, "fell-kp", RuleOptions(kp_decay=-1.0))
    with pytest.raises(LearnerError, match="random_classifiers must be False"):
        build(spec, "fell-kp", RuleOptions(random_classifiers=True))
    with pytest.raises(LearnerError, match="padding must be one of 'valid', 'same'"):
        build_arch("2c3-4", (1, 5, 5), 2, "ell", RuleOptions(), padding="full")
    with pytest.raises(LearnerError, match="tau must be a positive number"):
        build_arch("10-4", (3,), 2, "ell", RuleOptions(), tau=0)
    decolle = S.load("digits-decolle")
    with pytest.raises(LearnerError, match=r"layers\[0\].neuron.model is 'decolle'; rule 'ell' runs 'lif' neurons"):
        build(decolle, "ell", RuleOptions())
    assert issubclass(LearnerError, LocalsnnError)


def test_bad_inputs_say_what_shape_is_expected():
    m = build_arch("10-4", (3,), 5, "ell", RuleOptions())
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(LearnerError, match=r"x has shape \(4, 2, 3\); this network takes \[T, B, \*input_shape\] = \[5, B, 3\]"):
        m.train_step(torch.rand(4, 2, 3), torch.tensor([0, 1]), opt)
    with pytest.raises(LearnerError, match=r"labels must be in 0..3; got 0..7"):
        m.train_step(torch.rand(5, 2, 3), torch.tensor([0, 7]), opt)
    with pytest.raises(LearnerError, match=r"y must be integer labels of shape \[B\] = \[2\]"):
        m.train_step(torch.rand(5, 2, 3), torch.tensor([0.0, 1.0]), opt)


# ---------------------------------------------------------------------------------------------
# They learn
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_learns_digits(rule):
    """sklearn's 8x8 digits, direct input, 64-10 (one hidden layer of 64), T = 5, two epochs
    of Adam: well above the 10 % of chance (each rule reaches 92-95 %)."""
    ds = data.load("digits")
    T = 5
    X = torch.tensor(ds.x_train, dtype=torch.float32) / ds.max_value
    Yl = torch.tensor(ds.y_train, dtype=torch.int64)
    m = build_arch("64-10", (64,), T, rule, RuleOptions(seed=0))
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        perm = torch.randperm(len(X), generator=g)
        for k in range(0, len(X), 32):
            idx = perm[k : k + 32]
            m.train_step(X[idx].expand(T, -1, -1), Yl[idx], opt)
    Xt = torch.tensor(ds.x_test, dtype=torch.float32) / ds.max_value
    (counts,) = m.evaluate(Xt.expand(T, -1, -1))
    acc = float((counts.argmax(1) == torch.tensor(ds.y_test, dtype=torch.int64)).float().mean())
    assert acc > 0.8, f"{rule}: test accuracy {acc:.3f}"
