"""The whole chip in Amaranth's simulator (no Verilator): learning off through the CTRL
register, and the register interface itself."""

from __future__ import annotations

import numpy as np

from localsnn import spec as S
from localsnn.data import load
from localsnn.golden import Golden
from localsnn.chip import ID_WORD, REGISTERS, address, event_index_bits, lfsr_stream_names
from localsnn.rtl.top import Network
from localsnn.sim.amaranth_chip import AmaranthChip, run
from localsnn.sim.harness import check_samples, to_signed
from localsnn.sim.configs import matrix_spec


def _net(spec, lanes=4):
    g = Golden(spec)
    return g, Network(spec, lanes=lanes, params=g.params)


def test_learning_off_leaves_every_weight_as_golden_does():
    spec = matrix_spec("ell", "latency", "two")
    ds = load("digits")
    g, net = _net(spec)
    x = g.quantize(ds.x_train[:2], ds.max_value)

    async def body(ctx):
        chip = AmaranthChip(ctx, net, idle=0.3, stall=0.3, seed=5)
        return await check_samples(chip, spec, g.params, net.memory_map(), [(x[0], 3), (x[1], None)], learn=False)

    report = run(net, body)
    assert report.samples == 2 and report.compared > 0


def test_register_interface():
    spec = S.load("digits")
    g, net = _net(spec, lanes=2)
    reg = {k: v[0] for k, v in REGISTERS.items()}
    lo, hi = spec.lr_shift_range()

    async def body(ctx):
        chip = AmaranthChip(ctx, net)
        assert await chip.read(reg["ID"]) == ID_WORD
        assert await chip.read(reg["LR_SHIFT"]) == spec.learning.lr_shift
        await chip.write(reg["LR_SHIFT"], hi + 1)  # out of range: ignored
        assert await chip.read(reg["LR_SHIFT"]) == spec.learning.lr_shift
        await chip.write(reg["LR_SHIFT"], lo)
        assert await chip.read(reg["LR_SHIFT"]) == lo
        assert await chip.read(reg["LEARN_MASK"]) == 1
        names = lfsr_stream_names(spec)
        for k, name in enumerate(names):
            assert await chip.read(reg["LFSR_BASE"] + k) == net.seeds[name]
        await chip.write(reg["LFSR_BASE"] + 1, 12345)
        assert await chip.read(reg["LFSR_BASE"] + 1) == 12345
        # a weight and a potential, written and read back through the memory regions
        w_region = net.layer_regions[0]["w"]
        addr = address(w_region, 3 * net.layers[0].wpr * 2 + 5)
        assert to_signed(await chip.read(addr)) == int(g.params.layers[0].w[3, 5])
        await chip.write(addr, -77)
        assert to_signed(await chip.read(addr)) == -77
        assert await chip.read(address(60)) == 0  # no such region: reads 0
        assert await chip.read(reg["STATUS"]) & 1 == 0
        return True

    assert run(net, body)


class _WithJunkEvents:
    """A chip whose host sends, in every step of an ``events`` sample, two events the chip must
    drop beside the real ones: an index past the last input and a real input with value 0 (the
    step's count word counts them)."""

    def __init__(self, chip, spec):
        self.chip, self.spec, self.label_next = chip, spec, True
        self.junk = [(1 << event_index_bits(spec)) - 1, 1]  # index 7 of 5 inputs; input 1, value 0
        assert self.junk[0] >= spec.inputs

    async def send(self, words):
        head, (k, *events) = (words[:1], words[1:]) if self.label_next else ([], words)
        self.label_next = False
        await self.chip.send(head + [k + 2, self.junk[0] | 3 << event_index_bits(self.spec)] + events + [self.junk[1]])

    def __getattr__(self, name):
        return getattr(self.chip, name)


def test_event_words_outside_the_inputs_or_of_value_0_are_dropped():
    """``events`` input (counts, ``u2.0``): every step's events equal golden's dense input even
    with an index that is no input and an event of value 0 among them."""
    spec = S.NetworkSpec(
        name="events-junk", inputs=5, classes=3, timesteps=3,
        encoding=S.EncodingSpec(kind="events", format=S.FixedFormat(2, 0, signed=False), window_us=1000),
        layers=(S.LayerSpec(size=4, init=S.InitSpec(scale=0.5)),), learning=S.LearningSpec(rule="ell"),
    )
    g, net = _net(spec, lanes=2)
    x = np.array([[3, 0, 1, 0, 2], [0, 0, 0, 0, 0], [1, 2, 3, 1, 2]])

    async def body(ctx):
        chip = _WithJunkEvents(AmaranthChip(ctx, net, idle=0.3, stall=0.3, seed=2), spec)
        return await check_samples(chip, spec, g.params, net.memory_map(), [(x, 2)], learn=True)

    report = run(net, body)
    assert report.samples == 1 and report.steps == 3 and report.compared > 0
