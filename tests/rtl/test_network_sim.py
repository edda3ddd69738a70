"""The whole chip in Amaranth's simulator (no Verilator): learning off through the CTRL
register, and the register interface itself."""

from __future__ import annotations

from localsnn import spec as S
from localsnn.data import load
from localsnn.golden import Golden
from localsnn.chip import ID_WORD, REGISTERS, address, lfsr_stream_names
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
