"""Weights in single-port memories without initial contents (an iCE40UP's SPRAM): the chip
learns exactly as golden does once the host has written the weights, and the Verilog keeps no
initial contents for them."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import rtlil

from localsnn import spec as S
from localsnn.chip import load_host_init
from localsnn.data import load
from localsnn.golden import Golden
from localsnn.rtl.generate import strip_host_init
from localsnn.chip import REGISTERS
from localsnn.rtl.top import Network
from localsnn.sim.amaranth_chip import AmaranthChip, run
from localsnn.sim.configs import matrix_spec
from localsnn.sim.harness import Mismatch, check_samples, read_array, regions

STATUS = REGISTERS["STATUS"][0]


def _samples(g, n):
    ds = load("digits")
    x = g.quantize(ds.x_train[:n], ds.max_value)
    return [(x[k], int(ds.y_train[k])) for k in range(n)]


@pytest.mark.parametrize("rule, lanes", [("ell", 2), ("fell", 1), ("decolle", 2)])
def test_spram_chip_learns_as_golden_after_the_host_writes_the_weights(rule, lanes):
    spec = matrix_spec(rule, "rate" if rule != "decolle" else "direct", "two")
    g = Golden(spec)
    net = Network(spec, lanes=lanes, params=g.params, spram=True)
    mm = net.memory_map()
    loaded = [f"layer{i}.{k}" for i in (0, 1) for k in (("w",) if rule == "decolle" else ("w", "clf_w"))]
    assert [e["name"] for e in mm if e.get("host_init")] == loaded

    async def body(ctx):
        chip = AmaranthChip(ctx, net)
        assert (await chip.read(STATUS)) >> 1 & 1 == 1  # no weights yet
        assert await load_host_init(chip, mm, g.params) == loaded
        assert (await chip.read(STATUS)) >> 1 & 1 == 0
        return await check_samples(chip, spec, g.params, mm, _samples(g, 2), learn=True)

    report = run(net, body)
    assert report.samples == 2 and report.compared > 0


def test_spram_chip_without_weights_differs_from_golden():
    """The test above can fail: skip the host's write and the first step already differs."""
    spec = matrix_spec("ell", "rate", "two")
    g = Golden(spec)
    net = Network(spec, lanes=2, params=g.params, spram=True)

    async def body(ctx):
        chip = AmaranthChip(ctx, net)
        w = await read_array(chip, regions(net.memory_map())["layer0.w"])
        assert not w.any()  # the simulator's memories start at 0; SPRAM's at whatever they hold
        await check_samples(chip, spec, g.params, net.memory_map(), _samples(g, 1), learn=True)

    with pytest.raises(Mismatch):
        run(net, body)


def test_read_modify_write_phases_take_twice_the_clocks_with_spram():
    """HUPD and CUPD read and write w and the classifier weights: with one port they issue a
    word every other clock."""
    spec = matrix_spec("ell", "rate", "two")
    g = Golden(spec)
    phases = {}
    for spram in (False, True):
        net = Network(spec, lanes=2, params=g.params, spram=spram)

        async def body(ctx, net=net):
            chip = AmaranthChip(ctx, net)
            await load_host_init(chip, net.memory_map(), g.params)
            return await check_samples(chip, spec, g.params, net.memory_map(), _samples(g, 1), learn=True)

        rep = run(net, body)
        phases[spram] = np.array(rep.phase_cycles)[:, 0, :]  # layer 0, per step, per phase
    names = list(net.layers[0].PHASES)
    fwd = names.index("FWD")
    assert (phases[True][:, fwd] == phases[False][:, fwd]).all()
    for upd in (names.index("HUPD"), names.index("CUPD")):
        busy = phases[False][:, upd] > 1  # a step without spikes: CUPD has no pair, 1 clock
        assert busy.any()
        assert (phases[True][~busy, upd] == phases[False][~busy, upd]).all()
        # n pairs: n + 2 clocks on two ports (control and pipeline), 2n + 1 on one
        n = phases[False][busy, upd] - 2
        assert (phases[True][busy, upd] == 2 * n + 1).all(), (phases[False][busy, upd], phases[True][busy, upd])


def test_verilog_has_no_initial_contents_for_the_spram_memories_only():
    spec = S.load("digits")
    text = rtlil.convert(Network(spec, lanes=1, spram=True), name="top", emit_src=False)
    stripped = strip_host_init(text)
    assert text.count("$meminit_v2") - stripped.count("$meminit_v2") == 2  # layer0's w and clf_w
    assert 'attribute \\ram_style "huge"' in stripped
    plain = rtlil.convert(Network(spec, lanes=1), name="top", emit_src=False)
    assert strip_host_init(plain) == plain
    assert 'ram_style "huge"' not in plain
