"""The float DECOLLE learner (train/decolle.py) and truncated local BPTT (train/tlbptt.py).

Every reference here is computed independently of the modules under test: DECOLLE eq. 4 and the
rule eq. 7-9 in a plain numpy loop, global BPTT and truncated local BPTT by plain autograd of
Guo's eq. 3 loss through hand-written LIF loops (with their own surrogate function), and the
forward equations against the bit-accurate golden model. Small nets, CPU, float64.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from localsnn import data
from localsnn import spec as S
from localsnn.errors import SpecError
from localsnn.golden import Golden
from localsnn.train import decolle, tlbptt
from localsnn.train.api import Learner, RuleOptions

torch.set_num_threads(1)


class RecordingOptimizer(torch.optim.Optimizer):
    """Records every parameter's ``.grad`` at each ``step()`` and, unless ``lr`` is given,
    leaves the weights alone (so every step's gradient is taken at the same weights)."""

    def __init__(self, params, lr: float = 0.0) -> None:
        super().__init__(list(params), {"lr": lr})
        self.steps: list[list[torch.Tensor | None]] = []

    @torch.no_grad()
    def step(self, closure=None):
        grads = []
        for group in self.param_groups:
            for p in group["params"]:
                grads.append(None if p.grad is None else p.grad.clone())
                if group["lr"] and p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
        self.steps.append(grads)


def one_hot(y: torch.Tensor, classes: int) -> np.ndarray:
    return np.eye(classes)[y.numpy()]


# =============================================================================================
# DECOLLE
# =============================================================================================

ALPHA, BETA, GAMMA, RHO, THETA = 0.7, 0.4, 0.6, 0.8, 0.05


def small_decolle(reg=(0.0, 0.0), loss="smooth_l1", update="step", seed=3, **kw) -> decolle.DecolleNet:
    opts = RuleOptions(update=update, decolle_reg=reg, seed=seed)
    kw = {"init_gain": 2.5, "readout_ampl": 1.5, **kw}
    net = decolle.build_arch([7, 5], 6, 3, 8, opts, alpha=ALPHA, beta=BETA, gamma=GAMMA, rho=RHO, threshold=THETA, loss=loss, **kw)
    return net.double()


def decolle_input(T=8, B=4, inputs=6, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, inputs, generator=g, dtype=torch.float64) < 0.5).double()


def eq4_reference(ws, x):
    """Kaiser eq. 4 literally, numpy, for every layer; returns per layer lists of P, Q, R, U, S, Y."""
    T, B, _ = x.shape
    out = []
    inp = [x[t] for t in range(T)]
    for w in ws:
        W, b, G = w["w"], w["bias"], w["clf_w"]
        P = np.zeros((B, W.shape[0]))
        Q = np.zeros((B, W.shape[0]))
        R = np.zeros((B, W.shape[1]))
        rec = {k: [] for k in "PQRUSY"}
        spikes = []
        for t in range(T):
            U = np.einsum("bj,ji->bi", P, W) - RHO * R + b
            Sp = (U > THETA).astype(float)  # strict: a neuron at rest does not fire
            for k, v in zip("PQRUSY", (P, Q, R, U, Sp, Sp @ G)):
                rec[k].append(v)
            P, Q, R = ALPHA * P + (1 - ALPHA) * Q, BETA * Q + (1 - BETA) * inp[t], GAMMA * R + (1 - GAMMA) * Sp
            spikes.append(Sp)
        inp = spikes
        out.append({k: np.stack(v) for k, v in rec.items()})
    return out


def test_decolle_layer_follows_eq4_step_by_step():
    net = small_decolle()
    x = decolle_input()
    ws = [{k: v.numpy() for k, v in d.items()} for d in net.float_weights()]
    ref = eq4_reference(ws, x.numpy())
    rec = net.record(x)
    for layer, (r, f) in enumerate(zip(ref, rec)):
        for key in "PQRUSY":
            np.testing.assert_allclose(f[key].numpy(), r[key], rtol=0, atol=1e-12, err_msg=f"layer {layer} {key}")
        assert 0 < r["S"].mean() < 1, "the test needs neurons that both fire and stay silent"
    # evaluate() is the readout summed over the window
    for f, r in zip(net.evaluate(x), ref):
        np.testing.assert_allclose(f.numpy(), r["Y"].sum(axis=0), atol=1e-12)


def eq78_online_reference(ws, x, y, eta, reg, width=1.0):
    """Kaiser eq. 4 with online updates after every step: eq. 7-8 with the smooth L1 error
    clip(Y - Yhat, -1, 1), H in place of G, boxcar sigma', refractory term dropped, plus the
    gradient of the eq. 9 regularisers; batch mean. Returns the final weights."""
    T, B, _ = x.shape
    Yhat = one_hot(y, ws[0]["clf_w"].shape[1])
    ws = [{k: v.copy() for k, v in d.items()} for d in ws]
    st = [(np.zeros((B, w["w"].shape[0])), np.zeros((B, w["w"].shape[0])), np.zeros((B, w["w"].shape[1]))) for w in ws]
    lam1, lam2 = reg
    for t in range(T):
        inp = x[t]
        for i, w in enumerate(ws):
            P, Q, R = st[i]
            U = P @ w["w"] + w["bias"] - RHO * R
            Sp = (U > THETA).astype(float)  # strict: a neuron at rest does not fire
            Y = Sp @ w["clf_w"]
            error = np.clip(Y - Yhat, -1, 1) @ w["feedback"].T  # error_i = sum_k H_ik (Y_k - Yhat_k)
            sg = (np.abs(U - THETA) <= width / 2).astype(float)  # boxcar
            V = U - THETA
            N = U.shape[1]
            d = error * sg + lam1 / N * (V + 0.01 > 0) - lam2 / N * (0.1 - V.mean(axis=1, keepdims=True) > 0)
            w["w"] = w["w"] - eta * np.einsum("bj,bi->ji", P, d) / B  # Delta W_ji = -eta d_i P_j
            w["bias"] = w["bias"] - eta * d.sum(axis=0) / B
            st[i] = (ALPHA * P + (1 - ALPHA) * Q, BETA * Q + (1 - BETA) * inp, GAMMA * R + (1 - GAMMA) * Sp)
            inp = Sp
    return ws


@pytest.mark.parametrize("reg", [(0.0, 0.0), (0.3, 0.5)])
def test_decolle_update_equals_eq7_8_online(reg):
    net = small_decolle(reg=reg)
    x = decolle_input(T=8, B=3)
    y = torch.tensor([0, 2, 1])
    w0 = [{k: v.numpy() for k, v in d.items()} for d in net.float_weights()]
    eta = 0.05
    ref = eq78_online_reference(w0, x.numpy(), y, eta, reg)
    net.train_step(x, y, torch.optim.SGD(net.parameters(), lr=eta))
    for i, (f, r) in enumerate(zip(net.float_weights(), ref)):
        for key in ("w", "bias"):
            assert not np.allclose(r[key], w0[i][key]), f"layer {i} {key}: the test needs weights that change"
            np.testing.assert_allclose(f[key].numpy(), r[key], rtol=0, atol=1e-12, err_msg=f"layer {i} {key}")
        for key in ("clf_w", "feedback"):  # G and H are fixed
            np.testing.assert_array_equal(f[key].numpy(), w0[i][key])


def test_decolle_error_is_clipped_by_smooth_l1_and_not_by_mse():
    """With a large readout, |Y - Yhat| > 1: smooth L1's error saturates at +-1, MSE's does not
    (MSE is golden's error, eq. 8, everywhere)."""
    x = decolle_input(T=6, B=2)
    y = torch.tensor([1, 0])
    grads = {}
    for loss in ("smooth_l1", "mse"):
        net = small_decolle(loss=loss, readout_ampl=20.0)
        opt = RecordingOptimizer(net.parameters())
        net.train_step(x, y, opt)
        grads[loss] = torch.stack([g[0] for g in opt.steps])  # layer 0's w at every step
        rec = net.record(x)
        H = net.layers[0].feedback.numpy()
        Yhat = one_hot(y, 3)
        exp = []
        for t in range(6):
            e = rec[0]["Y"][t].numpy() - Yhat
            e = np.clip(e, -1, 1) if loss == "smooth_l1" else e
            d = (e @ H.T) * (np.abs(rec[0]["U"][t].numpy() - THETA) <= 0.5)
            exp.append(rec[0]["P"][t].numpy().T @ d / 2)
        np.testing.assert_allclose(grads[loss].numpy(), np.stack(exp), atol=1e-12)
    assert (rec[0]["Y"].abs() > 2).any()
    assert not torch.allclose(grads["smooth_l1"], grads["mse"])


def test_decolle_sample_update_sums_the_step_gradients():
    x = decolle_input(T=5, B=2)
    y = torch.tensor([2, 1])
    step_net, sample_net = small_decolle(update="step"), small_decolle(update="sample")
    opt_step, opt_sample = RecordingOptimizer(step_net.parameters()), RecordingOptimizer(sample_net.parameters())
    step_net.train_step(x, y, opt_step)
    sample_net.train_step(x, y, opt_sample)
    assert len(opt_step.steps) == 5 and len(opt_sample.steps) == 1
    for j in range(len(opt_sample.steps[0])):
        total = sum(s[j] for s in opt_step.steps if s[j] is not None)
        np.testing.assert_allclose(opt_sample.steps[0][j].numpy(), total.numpy(), atol=1e-12)


def test_decolle_keeps_no_autograd_graph_whatever_T():
    """Section 2.3.1: no memory for gradients. No tensor is saved for a backward pass, no
    gradient has a history, and the state is the same few tensors for T = 3 and T = 60."""
    net = decolle.build(S.load("digits-decolle"), "decolle", RuleOptions())
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    packed: list[torch.Size] = []

    def pack(t):
        packed.append(t.shape)
        return t

    for T in (3, 60):
        packed.clear()
        x = torch.rand(T, 4, 64)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net.train_step(x, torch.tensor([0, 1, 2, 3]), opt)
        assert packed == [], f"T={T}: {len(packed)} tensors saved for backward"
        assert math.isfinite(out["loss"])
        assert all(p.grad is None for p in net.parameters())  # zero_grad after the last step
        state = net._initial_state(4, x)
        assert [tuple(t.shape) for st in state for t in st] == [(4, 64), (4, 64), (4, 64)]
    # the gradients the rule writes carry no graph either
    opt = RecordingOptimizer(net.parameters())
    net.train_step(torch.rand(5, 2, 64), torch.tensor([1, 2]), opt)
    assert all(g is not None and g.grad_fn is None and not g.requires_grad for g in opt.steps[-1])


@pytest.mark.parametrize("trace_order", S.TRACE_ORDERS)
def test_decolle_forward_equals_golden_up_to_rounding(trace_order):
    """The float model runs golden's DECOLLE equations: with golden's initial integers as real
    weights, the membrane potential equals golden's up to its fixed-point rounding at every
    step until the first step where a spike differs (a rounding near the threshold), and
    almost all spikes agree."""
    spec = with_trace_order(S.load("digits-decolle"), trace_order)
    g = Golden(spec)
    net = decolle.build(spec, "decolle", RuleOptions()).double()
    assert net.layers[0].cfg.trace_order == trace_order
    ls, lp = spec.layers[0], g.params.layers[0]
    net.load_float_weights(
        [
            {
                "w": torch.tensor(lp.w / 2**ls.weight.frac),
                "bias": torch.tensor(lp.bias / 2**ls.weight.frac),
                "clf_w": torch.tensor(lp.clf_w / 2**ls.classifier.weight.frac),
                "feedback": torch.tensor(lp.feedback / 2**ls.classifier.feedback.frac),
            }
        ]
    )
    ds = data.load("digits")
    q = g.quantize(ds.x_test[:20], ds.max_value)
    agree = []
    for s in range(20):
        rec = g.run_sample(q[s], learn=False).layers[0]
        x = torch.tensor(q[s] / 2**spec.encoding.format.frac).expand(spec.timesteps, 1, -1)
        fl = net.record(x)[0]
        u_g = rec.potential / 2**ls.neuron.potential.frac
        u_f = fl["U"][:, 0].numpy()
        s_f = fl["S"][:, 0].numpy()
        bad = np.flatnonzero((rec.spikes != s_f).any(axis=1))
        upto = bad[0] + 1 if len(bad) else spec.timesteps
        assert np.abs(u_g - u_f)[:upto].max() < 1 / 64, f"sample {s}"
        np.testing.assert_allclose(fl["Y"][:, 0].numpy()[:upto - 1 if len(bad) else upto], (rec.readout / 2**ls.classifier.weight.frac)[:upto - 1 if len(bad) else upto], atol=1e-12)
        agree.append((rec.spikes == s_f).mean())
    assert np.mean(agree) > 0.98


def with_trace_order(spec, order):
    return dataclasses.replace(spec, layers=tuple(dataclasses.replace(ls, neuron=dataclasses.replace(ls.neuron, trace_order=order)) for ls in spec.layers))


@pytest.mark.parametrize("trace_order, latency", [("paper", 2), ("decolle-public", 1)])
def test_decolle_latency_follows_the_trace_order(trace_order, latency):
    """One input spike at step 0: it reaches U at step 2 with eq. 4 as printed (Q at 1, P at
    2) and at step 1 with the authors' order (Q and P move in the step it arrives), in golden
    and in the float model alike."""
    spec = with_trace_order(dataclasses.replace(S.load("digits-decolle"), timesteps=4), trace_order)
    spec = dataclasses.replace(spec, encoding=dataclasses.replace(spec.encoding, kind="latency"))
    g = Golden(spec)
    x = np.zeros(spec.inputs, dtype=np.int64)
    x[10] = (1 << spec.encoding.format.frac) - 1  # brightest: the latency code's spike at t = 0
    rec = g.run_sample(x, learn=False).layers[0]
    assert [t for t in range(spec.timesteps) if rec.potential[t].any()][0] == latency
    net = decolle.build(spec, "decolle", RuleOptions()).double()
    xt = torch.zeros(spec.timesteps, 1, spec.inputs, dtype=torch.float64)
    xt[0, 0, 10] = 1.0
    fl = net.record(xt)[0]
    assert [t for t in range(spec.timesteps) if fl["U"][t].any()][0] == latency


def test_a_decolle_neuron_at_rest_does_not_fire():
    """The shipped spec (threshold 0, biases initialised to 0): before any input arrives every
    potential is exactly 0, and no neuron fires (``U > theta``, localsnn.spec.fires), in golden
    and in the float model, neither for an all-zero sample nor at the first step of a real one
    (the input reaches ``U`` through the traces, two steps later)."""
    spec = S.load("digits-decolle")
    g = Golden(spec)
    net = decolle.build(spec, "decolle", RuleOptions()).double()
    ds = data.load("digits")
    q = g.quantize(ds.x_test[:1], ds.max_value)[0]
    for x in (np.zeros_like(q), q):
        rec = g.run_sample(x, learn=False).layers[0]
        fl = net.record(torch.tensor(x / 2**spec.encoding.format.frac).expand(spec.timesteps, 1, -1))[0]
        assert not rec.potential[:2].any() and not rec.spikes[:2].any()
        assert not fl["U"][:2].any() and not fl["S"][:2].any()
        if not x.any():
            assert not rec.spikes.any() and not fl["S"].any() and not rec.readout.any()
    assert rec.spikes.any()  # the real sample does make the layer fire, later


def test_decolle_build_from_spec_takes_its_constants():
    spec = S.load("digits-decolle")
    net = decolle.build(spec, "decolle", RuleOptions())
    cfg = net.layers[0].cfg
    n = spec.layers[0].neuron
    assert (cfg.alpha, cfg.beta, cfg.gamma) == (n.alpha.value, n.beta.value, n.gamma.value)
    assert (cfg.rho, cfg.threshold) == (1.0, 0.0)
    assert net.surrogate == ("boxcar", 1.0)
    assert cfg.init_scale == pytest.approx(0.3, abs=2**-12) and cfg.readout_scale == 0.125
    assert net.layers[0].w.abs().max() <= cfg.init_scale and net.layers[0].clf_w.abs().max() <= 0.125
    # H is sign-concordant with G
    G, H = net.layers[0].clf_w, net.layers[0].feedback
    assert ((H == 0) | (torch.sign(H) == torch.sign(G))).all() and (H != 0).float().mean() > 0.9
    # the options' surrogate replaces the spec's
    assert decolle.build(spec, "decolle", RuleOptions(surrogate="exp")).surrogate == ("exp", 1.0)
    assert decolle.build(spec, "decolle", RuleOptions(surrogate="rect", surrogate_width=0.3)).surrogate == ("rect", 0.3)


def test_decolle_on_a_lif_spec_uses_the_paper_constants():
    spec = S.load("digits")
    net = decolle.build(spec, "decolle", RuleOptions())
    cfg = net.layers[0].cfg
    assert (cfg.alpha, cfg.beta, cfg.gamma, cfg.rho, cfg.threshold) == (0.97, 0.92, 0.65, 1.0, 0.0)
    assert [lay.size for lay in net.layers] == [ls.size for ls in spec.layers]
    assert net.surrogate == ("exp", 1.0)  # the spec's surrogate still applies unless the options say


def test_decolle_float_weights_and_protocol():
    net = small_decolle()
    assert isinstance(net, Learner) and net.rule == "decolle"
    assert net.layer_names() == ["layer0", "layer1"]
    fw = net.float_weights()
    assert [{k: tuple(v.shape) for k, v in d.items()} for d in fw] == [
        {"w": (6, 7), "bias": (7,), "clf_w": (7, 3), "feedback": (7, 3)},
        {"w": (7, 5), "bias": (5,), "clf_w": (5, 3), "feedback": (5, 3)},
    ]
    assert sorted(n for n, _ in net.named_parameters()) == ["layers.0.bias", "layers.0.w", "layers.1.bias", "layers.1.w"]
    fw[0]["w"] += 1  # copies
    assert not torch.equal(fw[0]["w"], net.layers[0].w)
    with pytest.raises(ValueError, match=r"layer 0 w: shape \(6, 6\); needed \(6, 7\)"):
        net.load_float_weights([{**fw[0], "w": torch.zeros(6, 6)}, fw[1]])


def test_decolle_frozen_layer_does_not_learn():
    net = small_decolle(learn=[False, True])
    before = net.float_weights()
    net.train_step(decolle_input(), torch.tensor([0, 1, 2, 0]), torch.optim.SGD(net.parameters(), lr=0.1))
    after = net.float_weights()
    assert torch.equal(before[0]["w"], after[0]["w"]) and not torch.equal(before[1]["w"], after[1]["w"])


# =============================================================================================
# Truncated local BPTT
# =============================================================================================

LEAK, UTH, RESET, A = 0.8, 0.5, 0.45, 1.0


def small_tlbptt(k, n, update="step", random_classifiers=False, seed=1, T=6) -> tlbptt.TLBPTTNet:
    opts = RuleOptions(k=k, n=n, update=update, random_classifiers=random_classifiers, seed=seed, surrogate="rect", surrogate_width=A)
    net = tlbptt.build_arch([6, 5, 4], 5, 3, T, opts, leak=LEAK, threshold=UTH, reset=RESET, init_gain=2.0)
    return net.double()


def tl_input(T=6, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, 5, generator=g, dtype=torch.float64) * 1.5


class RefSpike(torch.autograd.Function):
    """Guo eq. 2 forward, eq. 6 backward: 1/a for |v| < a/2 (a = 1 here, wider than Guo's 0.5,
    so that most weights of these small nets get a gradient)."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v >= 0).double()

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * (v.abs() < A / 2).double() / A


def ref_lif(cur, u, s):
    u = LEAK * u + cur - RESET * s  # Guo eq. 1
    return u, RefSpike.apply(u - UTH)  # eq. 2


def ref_params(net):
    W = [w.detach().clone().requires_grad_() for w in net.w]
    C = {l: net.classifier_weight(l).detach().clone().requires_grad_() for l in net.clf_layers}
    return W, C


def global_bptt_grads(net, x, y):
    """Plain BPTT: the eq. 3 loss of the last classifier over the whole window, autograd
    through every layer and every step, nothing detached."""
    W, C = ref_params(net)
    T, B, _ = x.shape
    last = len(W) - 1
    us = [(torch.zeros(B, w.shape[1], dtype=torch.float64),) * 2 for w in W]
    cu = cs = torch.zeros(B, 3, dtype=torch.float64)
    count = torch.zeros(B, 3, dtype=torch.float64)
    for t in range(T):
        inp = x[t]
        for l, w in enumerate(W):
            us[l] = ref_lif(inp @ w, *us[l])
            inp = us[l][1]
        cu, cs = ref_lif(inp @ C[last], cu, cs)
        count = count + cs
    yhat = torch.nn.functional.one_hot(y, 3).double()
    loss = ((yhat - count / T) ** 2).mean(dim=1).mean()
    return torch.autograd.grad(loss, W + [C[last]])


def truncated_local_grads(net, x, y, k, n):
    """Truncated local BPTT, written out: per interval of k steps (state detached at its start)
    and block of n layers (input spikes detached at its first layer), autograd of the sum of
    the block classifiers' eq. 3 losses; the gradient of every interval."""
    W, C = ref_params(net)
    L = len(W)
    T, B, _ = x.shape
    yhat = torch.nn.functional.one_hot(y, 3).double()
    z = lambda m: torch.zeros(B, m, dtype=torch.float64)
    hs = [(z(w.shape[1]), z(w.shape[1])) for w in W]
    cs_ = {l: (z(3), z(3)) for l in C}
    out = []
    for t0 in range(0, T, k):
        t1 = min(t0 + k, T)
        hs = [(u.detach(), s.detach()) for u, s in hs]
        cs_ = {l: (u.detach(), s.detach()) for l, (u, s) in cs_.items()}
        counts = {l: z(3) for l in C}
        for t in range(t0, t1):
            inp = x[t]
            for l in range(L):
                if l % n == 0:
                    inp = inp.detach()
                hs[l] = ref_lif(inp @ W[l], *hs[l])
                inp = hs[l][1]
                if l in C:
                    cs_[l] = ref_lif(inp @ C[l], *cs_[l])
                    counts[l] = counts[l] + cs_[l][1]
        loss = sum(((yhat - counts[l] / (t1 - t0)) ** 2).mean(dim=1).mean() for l in C)
        params = [w for w in W] + [C[l] for l in sorted(C)]
        out.append(torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True))
    return out


def test_tlbptt_with_k_T_and_one_block_equals_global_bptt():
    net = small_tlbptt(k=6, n=3)
    x, y = tl_input(), torch.tensor([0, 2, 1])
    assert net.clf_layers == [2] and net.layer_names() == ["layer2"]
    ref = global_bptt_grads(net, x, y)
    for update in ("step", "sample"):
        net.options = dataclasses.replace(net.options, update=update)
        opt = RecordingOptimizer(net.parameters())
        net.train_step(x, y, opt)
        assert len(opt.steps) == 1
        got = opt.steps[0]
        assert len(got) == len(ref) == 4
        for j, (g, r) in enumerate(zip(got, ref)):
            assert r.abs().sum() > 0, f"parameter {j}: the test needs a nonzero gradient"
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-12, atol=1e-14, err_msg=f"parameter {j} ({update})")


@pytest.mark.parametrize("k,n", [(1, 1), (2, 1), (4, 1), (3, 2), (1, 3), (2, 3)])
def test_tlbptt_equals_truncated_local_reference(k, n):
    net = small_tlbptt(k=k, n=n)
    x, y = tl_input(), torch.tensor([1, 0, 2])
    ref = truncated_local_grads(net, x, y, k, n)
    opt = RecordingOptimizer(net.parameters())
    net.train_step(x, y, opt)
    assert len(opt.steps) == len(ref) == math.ceil(6 / k)  # one optimizer step per interval
    for i, (got, want) in enumerate(zip(opt.steps, ref)):
        for j, (g, r) in enumerate(zip(got, want)):
            g = torch.zeros_like(r) if g is None else g
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-12, atol=1e-14, err_msg=f"interval {i} parameter {j}")
    for j in range(len(ref[0])):
        assert any(want[j].abs().sum() > 0 for want in ref), f"parameter {j}: the test needs a nonzero gradient"


def test_tlbptt_truncation_and_blocks_change_the_gradient():
    x, y = tl_input(), torch.tensor([1, 0, 2])
    grads = {}
    for k, n in ((6, 3), (2, 3), (6, 1)):
        net = small_tlbptt(k=k, n=n, update="sample")
        opt = RecordingOptimizer(net.parameters())
        net.train_step(x, y, opt)
        grads[(k, n)] = opt.steps[0][0]  # first layer's weights
    assert not torch.allclose(grads[(6, 3)], grads[(2, 3)])  # truncation cuts temporal errors
    assert not torch.allclose(grads[(6, 3)], grads[(6, 1)])  # blocks cut spatial errors


def test_tlbptt_memory_grows_with_k_not_T():
    """The autograd graph of one interval holds the interval's k steps: the tensors saved for
    backward per interval are the same for T = 4 and T = 12 (k = 2), and grow linearly in k."""

    def saved_per_interval(T, k):
        net = small_tlbptt(k=k, n=1, T=T)
        counts = []
        cur = [0]

        def pack(t):
            cur[0] += 1
            return t

        class Counting(RecordingOptimizer):
            def step(self, closure=None):
                counts.append(cur[0])
                cur[0] = 0
                return super().step(closure)

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net.train_step(tl_input(T=T), torch.tensor([0, 1, 2]), Counting(net.parameters()))
        return counts

    a, b, c, d = saved_per_interval(4, 2), saved_per_interval(12, 2), saved_per_interval(12, 4), saved_per_interval(12, 1)
    assert len(a) == 2 and len(b) == 6 and len(c) == 3 and len(d) == 12
    assert set(a) == set(b) and len(set(b)) == 1 and len(set(c)) == 1 and len(set(d)) == 1
    # saved tensors per interval = (per step) * k + (the loss): linear in k
    per_step = b[0] - d[0]
    assert per_step > 0 and c[0] - b[0] == 2 * per_step


def test_tlbptt_random_classifiers_stay_fixed():
    net = small_tlbptt(k=3, n=1, random_classifiers=True)
    assert sorted(n for n, _ in net.named_parameters()) == ["w.0", "w.1", "w.2"]
    before = net.float_weights()
    net.train_step(tl_input(), torch.tensor([1, 0, 2]), torch.optim.SGD(net.parameters(), lr=0.5))
    after = net.float_weights()
    for b, a in zip(before, after):
        assert torch.equal(b["clf_w"], a["clf_w"])
    assert any(not torch.equal(b["w"], a["w"]) for b, a in zip(before, after))
    # the same seed draws the same classifier whether it is trained or not
    trainable = small_tlbptt(k=3, n=1)
    assert all(torch.equal(b["clf_w"], t["clf_w"]) for b, t in zip(before, trainable.float_weights()))


def test_tlbptt_float_weights_and_protocol():
    net = small_tlbptt(k=2, n=2)
    assert isinstance(net, Learner) and net.rule == "tlbptt"
    assert net.clf_layers == [1, 2] and net.layer_names() == ["layer1", "layer2"]  # blocks {0,1}, {2}
    assert [{k: tuple(v.shape) for k, v in d.items()} for d in net.float_weights()] == [{"w": (5, 6)}, {"w": (6, 5), "clf_w": (5, 3)}, {"w": (5, 4), "clf_w": (4, 3)}]
    scores = net.evaluate(tl_input())
    assert [tuple(s.shape) for s in scores] == [(3, 3), (3, 3)]
    rec = net.record(tl_input())
    for l in (1, 2):
        np.testing.assert_array_equal(rec[l]["cs"].sum(dim=0).numpy(), scores[l - 1].numpy())
    assert "cs" not in rec[0]


def test_tlbptt_lif_spec_runs_golden_neurons():
    """From a LIF spec, eq. 1 with tau = d, reset = d theta is golden's u = d (u - theta o) + I:
    with golden's initial integers as real weights, potentials agree up to golden's rounding
    until the first differing spike, and almost all spikes agree."""
    spec = S.load("digits")
    net = tlbptt.build(spec, "tlbptt", RuleOptions(n=1)).double()
    n = spec.layers[0].neuron
    assert net.neurons[0] == tlbptt.LIFConstants(n.alpha.value, n.threshold, n.alpha.value * n.threshold)
    assert net.surrogate == ("exp", 1.0)
    g = Golden(spec)
    ls, lp = spec.layers[0], g.params.layers[0]
    with torch.no_grad():
        net.w[0].copy_(torch.tensor(lp.w / 2**ls.weight.frac))
        net.classifier_weight(0).copy_(torch.tensor(lp.clf_w / 2**ls.classifier.weight.frac))
    ds = data.load("digits")
    q = g.quantize(ds.x_test[:20], ds.max_value)
    agree = []
    for s in range(20):
        rec = g.run_sample(q[s], learn=False).layers[0]
        fl = net.record(torch.tensor(q[s] / 2**spec.encoding.format.frac).expand(spec.timesteps, 1, -1))[0]
        s_f = fl["s"][:, 0].numpy()
        bad = np.flatnonzero((rec.spikes != s_f).any(axis=1))
        upto = bad[0] + 1 if len(bad) else spec.timesteps
        assert np.abs(rec.potential / 2**ls.neuron.potential.frac - fl["u"][:, 0].numpy())[:upto].max() < 1 / 32, f"sample {s}"
        agree.append((rec.spikes == s_f).mean())
    assert np.mean(agree) > 0.98


def test_tlbptt_on_a_decolle_spec_uses_guo_constants():
    net = tlbptt.build(S.load("digits-decolle"), "tlbptt", RuleOptions(k=5))
    assert net.neurons[0] == tlbptt.LIFConstants(0.8, 0.5, 0.5)
    assert net.surrogate == ("boxcar", 1.0)  # the spec's surrogate unless the options name one
    assert tlbptt.build_arch([4], 3, 2, 5, RuleOptions()).surrogate == ("rect", 0.5)


# =============================================================================================
# Validation, seeds
# =============================================================================================


@pytest.mark.parametrize(
    "opts,match",
    [
        (RuleOptions(k=0), r"options\.k: 0 is out of range; allowed: an integer from 1 to 6"),
        (RuleOptions(k=7), r"options\.k: 7 is out of range; allowed: an integer from 1 to 6"),
        (RuleOptions(k=2.0), r"options\.k: expected an integer, got 2\.0 \(float\)"),
        (RuleOptions(n=0), r"options\.n: 0 is out of range; allowed: an integer from 1 to 3"),
        (RuleOptions(n=4), r"options\.n: 4 is out of range; allowed: an integer from 1 to 3"),
        (RuleOptions(n=True), r"options\.n: expected an integer, got True"),
        (RuleOptions(update="epoch"), r"options\.update: unknown value 'epoch'; allowed: 'step', 'sample'"),
        (RuleOptions(surrogate="sigmoid"), r"options\.surrogate: unknown value 'sigmoid'; allowed: 'exp', 'rect', 'boxcar'"),
        (RuleOptions(surrogate_width=0.0), r"options\.surrogate_width: 0\.0 must be a positive number"),
        (RuleOptions(seed=-1), r"options\.seed: -1 is out of range"),
    ],
)
def test_tlbptt_option_errors(opts, match):
    with pytest.raises(SpecError, match=match):
        tlbptt.build_arch([6, 5, 4], 5, 3, 6, opts)


@pytest.mark.parametrize(
    "opts,match",
    [
        (RuleOptions(decolle_reg=(-1.0, 0.0)), r"options\.decolle_reg \(lambda_1\): -1\.0 must be >= 0"),
        (RuleOptions(decolle_reg=(0.1,)), r"options\.decolle_reg: expected two numbers \(lambda_1, lambda_2\), got \(0\.1,\)"),
        (RuleOptions(update="often"), r"options\.update: unknown value 'often'"),
    ],
)
def test_decolle_option_errors(opts, match):
    with pytest.raises(SpecError, match=match):
        decolle.build(S.load("digits-decolle"), "decolle", opts)


def test_build_errors():
    spec = S.load("digits-decolle")
    with pytest.raises(SpecError, match=r"rule: 'ell': train/decolle.py builds the 'decolle' rule only"):
        decolle.build(spec, "ell", RuleOptions())
    with pytest.raises(SpecError, match=r"rule: 'decolle': train/tlbptt.py builds the 'tlbptt' rule only"):
        tlbptt.build(spec, "decolle", RuleOptions())
    mixed = S.NetworkSpec(
        name="mixed",
        inputs=4,
        layers=(S.LayerSpec(size=3), S.LayerSpec(size=3, accumulator=40, neuron=S.NeuronSpec(model="decolle", threshold=0.0), classifier=S.ClassifierSpec(kind="random"))),
        learning=S.LearningSpec(rule="none"),
    )
    with pytest.raises(SpecError, match=r"layers: DECOLLE needs every layer to be 'decolle'.*layers\[0\]: 'lif', layers\[1\]: 'decolle'"):
        decolle.build(mixed, "decolle", RuleOptions())
    with pytest.raises(SpecError, match=r"layers: truncated local BPTT needs every layer to be 'lif'"):
        tlbptt.build(mixed, "tlbptt", RuleOptions())
    with pytest.raises(SpecError, match=r"sizes\[1\]: 0 is out of range"):
        decolle.build_arch([3, 0], 4, 2, 5)
    with pytest.raises(SpecError, match=r"layers\[0\]\.alpha: 1\.5 is not a decay factor"):
        decolle.build_arch([3], 4, 2, 5, alpha=1.5)
    with pytest.raises(SpecError, match=r"layers\[0\]\.neuron\.leak: 2\.0 is not a leak factor"):
        tlbptt.build_arch([3], 4, 2, 5, leak=2.0)
    assert decolle.RULES == {"decolle": decolle.build} and tlbptt.RULES == {"tlbptt": tlbptt.build}


@pytest.mark.parametrize("make", [lambda: small_decolle(), lambda: small_tlbptt(k=2, n=1)], ids=["decolle", "tlbptt"])
def test_batch_errors(make):
    net = make()
    T = 6
    x = torch.zeros(T, 3, net.inputs, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=rf"x must have shape \[T, B, {net.inputs}\] with T, B >= 1; got \[6, 3, 2\]"):
        net.train_step(torch.zeros(T, 3, 2), torch.tensor([0, 1, 2]), opt)
    with pytest.raises(ValueError, match=r"y must have shape \[B\] = \[3\]; got \[2\]"):
        net.train_step(x, torch.tensor([0, 1]), opt)
    with pytest.raises(ValueError, match=r"labels must be from 0 to 2; got values from 0 to 3"):
        net.train_step(x, torch.tensor([0, 1, 3]), opt)
    with pytest.raises(ValueError, match=r"y must hold integer labels, not torch.float32"):
        net.train_step(x, torch.tensor([0.0, 1.0, 2.0]), opt)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: decolle.build(S.load("digits-decolle"), "decolle", RuleOptions(seed=seed)),
        lambda seed: tlbptt.build(S.load("digits"), "tlbptt", RuleOptions(k=5, seed=seed)),
    ],
    ids=["decolle", "tlbptt"],
)
def test_same_seed_same_result(make):
    x = torch.rand(10, 4, 64, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([3, 1, 4, 1])

    def run(seed):
        net = make(seed)
        w0 = net.float_weights()
        out = net.train_step(x, y, torch.optim.Adam(net.parameters(), lr=1e-2))
        return w0, net.float_weights(), out

    a, b, c = run(7), run(7), run(8)
    for da, db in zip(a[1], b[1]):
        assert all(torch.equal(da[k], db[k]) for k in da)
    assert a[2] == b[2]
    assert any(not torch.equal(da["w"], dc["w"]) for da, dc in zip(a[0], c[0]))


@pytest.mark.parametrize("make", [lambda seed: small_decolle(seed=seed), lambda seed: small_tlbptt(k=2, n=2, seed=seed, random_classifiers=True)], ids=["decolle", "tlbptt"])
def test_state_dict_round_trip(make):
    """A checkpoint (state_dict) holds every array, fixed random ones (G, H, random classifiers)
    included, so a learner rebuilt with another seed comes back the same."""
    a, b = make(1), make(2)
    b.load_state_dict(a.state_dict())
    for da, db in zip(a.float_weights(), b.float_weights()):
        assert da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)


# =============================================================================================
# Learning sanity: the 8x8 digits, a few seconds on a CPU
# =============================================================================================


def digits_tensors(n_train=600):
    ds = data.load("digits")
    X = torch.tensor(ds.x_train[:n_train], dtype=torch.float32) / ds.max_value
    Y = torch.tensor(ds.y_train[:n_train], dtype=torch.int64)
    Xt = torch.tensor(ds.x_test, dtype=torch.float32) / ds.max_value
    Yt = torch.tensor(ds.y_test, dtype=torch.int64)
    return X, Y, Xt, Yt


def fit(net, opt, T, epochs=1, bs=32):
    X, Y, Xt, Yt = digits_tensors()
    before = [(s.argmax(1) == Yt).float().mean().item() for s in net.evaluate(Xt.unsqueeze(0).expand(T, -1, -1))]
    for ep in range(epochs):
        perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(ep))
        for b in range(0, len(X), bs):
            idx = perm[b : b + bs]
            out = net.train_step(X[idx].unsqueeze(0).expand(T, -1, -1), Y[idx], opt)
            assert math.isfinite(out["loss"])
    after = [(s.argmax(1) == Yt).float().mean().item() for s in net.evaluate(Xt.unsqueeze(0).expand(T, -1, -1))]
    return before, after


def test_decolle_learns_digits():
    spec = S.load("digits-decolle")
    net = decolle.build(spec, "decolle", RuleOptions())
    before, after = fit(net, torch.optim.Adamax(net.parameters(), lr=3e-3, betas=(0.0, 0.95)), spec.timesteps, epochs=2)
    assert after[-1] > 0.6 and after[-1] > before[-1] + 0.3, (before, after)


def test_tlbptt_learns_digits():
    spec = S.load("digits")
    net = tlbptt.build(spec, "tlbptt", RuleOptions(k=5, n=1))
    before, after = fit(net, torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9), spec.timesteps, epochs=2)
    assert after[-1] > 0.6 and after[-1] > before[-1] + 0.3, (before, after)
