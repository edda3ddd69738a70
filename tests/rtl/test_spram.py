"""Weights in single-port memories without initial contents (an iCE40UP's SPRAM), in Amaranth's
simulator: without the host's write the chip differs from golden, and the Verilog keeps no
initial contents for them. That it learns as golden does once the host has written them, and
the clocks of its throttled phases, are co-simulated in Verilator
(``tests/sim/test_cosim.py::test_weights_in_spram_are_written_by_the_host_then_equal_golden``)."""

from __future__ import annotations

import pytest
from amaranth.back import rtlil

from localsnn import spec as S
from localsnn.data import load
from localsnn.golden import Golden
from localsnn.rtl.generate import strip_host_init
from localsnn.rtl.top import Network
from localsnn.sim.amaranth_chip import AmaranthChip, run
from localsnn.sim.configs import matrix_spec
from localsnn.sim.harness import Mismatch, check_samples, read_array, regions


def _samples(g, n):
    ds = load("digits")
    x = g.quantize(ds.x_train[:n], ds.max_value)
    return [(x[k], int(ds.y_train[k])) for k in range(n)]


def test_spram_chip_without_weights_differs_from_golden():
    """The SPRAM co-simulation can fail: skip the host's write and the first step already differs."""
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


def test_verilog_has_no_initial_contents_for_the_spram_memories_only():
    spec = S.load("digits")
    text = rtlil.convert(Network(spec, lanes=1, spram=True), name="top", emit_src=False)
    stripped = strip_host_init(text)
    assert text.count("$meminit_v2") - stripped.count("$meminit_v2") == 2  # layer0's w and clf_w
    assert 'attribute \\ram_style "huge"' in stripped
    plain = rtlil.convert(Network(spec, lanes=1), name="top", emit_src=False)
    assert strip_host_init(plain) == plain
    assert 'ram_style "huge"' not in plain
