"""``LIFLearner.record``: every layer's potentials and spikes at every step, as the training
loop's raster plot reads them."""

from __future__ import annotations

import math

import torch
from localsnn.train import lif, loop
from localsnn.train.api import RuleOptions


def net():
    torch.manual_seed(0)
    # wide enough initial weights that both layers and both classifiers fire
    return lif.build_arch("16-12-4", (10,), 6, "ell", RuleOptions(seed=3), tau=2.0, theta=0.5, gain=3.0)


def test_record_is_the_forward_pass_step_by_step():
    learner = net()
    x = torch.rand(6, 3, 10, generator=torch.Generator().manual_seed(1))
    rec = learner.record(x)
    assert len(rec) == 2
    d = math.exp(-1 / 2.0)
    inp = x
    for i, (layer, r) in enumerate(zip(learner.layers, rec)):
        size = layer.size
        assert set(r) == {"u", "o", "ua", "oa"}
        assert r["u"].shape == r["o"].shape == (6, 3, size)
        assert r["ua"].shape == r["oa"].shape == (6, 3, 4)
        # eq. 2-3 recomputed independently, from this layer's recorded input
        u = torch.zeros(3, size)
        o = torch.zeros(3, size)
        ua = torch.zeros(3, 4)
        oa = torch.zeros(3, 4)
        for t in range(6):
            u = d * (u - 0.5 * o) + inp[t] @ layer.w.detach()
            o = (u >= 0.5).float()
            ua = d * (ua - 0.5 * oa) + o @ layer.clf_w.detach()
            oa = (ua >= 0.5).float()
            torch.testing.assert_close(r["u"][t], u)
            assert torch.equal(r["o"][t], o)
            torch.testing.assert_close(r["ua"][t], ua)
            assert torch.equal(r["oa"][t], oa)
        assert 0 < r["o"].mean() < 1, f"layer {i} never or always fires: the test would prove little"
        inp = r["o"]
    counts = learner.evaluate(x)
    for c, r in zip(counts, rec):
        assert torch.equal(c, r["oa"].sum(0))


def test_record_does_not_learn():
    learner = net()
    before = [p.detach().clone() for p in learner.parameters()]
    learner.record(torch.rand(6, 2, 10))
    assert all(torch.equal(a, b) for a, b in zip(before, learner.parameters()))
    assert all(p.grad is None for p in learner.parameters())


def test_the_loop_draws_every_hidden_layer_of_a_lif_net():
    learner = net()
    x = torch.rand(6, 1, 10)
    rasters = loop.sample_rasters(learner, x)
    assert [name for name, _ in rasters] == ["input", "layer 0", "layer 1"]
    assert rasters[1][1].shape == (6, 16) and rasters[2][1].shape == (6, 12)
    assert set(rasters[1][1].ravel().tolist()) <= {0.0, 1.0}
