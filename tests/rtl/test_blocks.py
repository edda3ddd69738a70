"""Small RTL blocks against their golden twins, in amaranth.sim: fixed-point steps, the LFSR."""

from __future__ import annotations

import random

import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from localsnn.golden import fixed as gfixed
from localsnn.golden.lfsr import LFSR as GoldenLFSR
from localsnn.golden.lfsr import TAPS
from localsnn.rtl import fixed as rfixed
from localsnn.rtl.lfsr import LFSR
from localsnn.spec import FixedFormat


def run_comb(m, bench):
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("mode", ["floor", "nearest", "stochastic"])
@pytest.mark.parametrize("s", [0, 1, 5, 13])
def test_constant_shift_round_matches_golden(mode, s):
    v = Signal(signed(40))
    r = Signal(unsigned(32))
    out = Signal(signed(42))
    m = Module()
    m.d.comb += out.eq(rfixed.shift_round(v, s, mode, r))
    rng = random.Random(s)

    async def bench(ctx):
        for _ in range(300):
            a, b = rng.randrange(-(1 << 39), 1 << 39), rng.randrange(1 << 32)
            ctx.set(v, a)
            ctx.set(r, b)
            assert ctx.get(out) == gfixed.shift_round(a, s, mode, b)

    run_comb(m, bench)


@pytest.mark.parametrize("mode", ["floor", "nearest", "stochastic"])
@pytest.mark.parametrize("width, shifts", [(30, 25), (8, 64)], ids=["s-below-width", "s-up-to-63"])
def test_variable_shift_round_matches_golden(mode, width, shifts):
    """Run-time shifts (the learning-rate register), also far beyond the value's width: a
    narrow change shifted by up to 63 (a corner the random specs found: the rounding half was
    cut to the value's width and 'nearest' rounded down)."""
    v = Signal(signed(width))
    s = Signal(range(shifts))
    r = Signal(unsigned(32))
    out = Signal(signed(32))
    m = Module()
    m.d.comb += out.eq(rfixed.shift_round(v, s, mode, r))
    rng = random.Random(7)

    async def bench(ctx):
        for _ in range(600):
            a, k, b = rng.randrange(-(1 << (width - 1)), 1 << (width - 1)), rng.randrange(shifts), rng.randrange(1 << 32)
            ctx.set(v, a)
            ctx.set(s, k)
            ctx.set(r, b)
            assert ctx.get(out) == gfixed.shift_round(a, k, mode, b), (a, k, b)

    run_comb(m, bench)


@pytest.mark.parametrize("fmt", [FixedFormat(8, 4), FixedFormat(8, 4, overflow="wrap"), FixedFormat(6, 6, signed=False), FixedFormat(5, 2, signed=False, overflow="wrap")])
def test_fit_matches_golden(fmt):
    v = Signal(signed(16))
    out = Signal(rfixed.fmt_shape(fmt))
    over = Signal()
    m = Module()
    value, flag = rfixed.fit(v, fmt)
    m.d.comb += [out.eq(value), over.eq(flag)]

    async def bench(ctx):
        for a in range(-600, 600, 3):
            ctx.set(v, a)
            ref, count = gfixed.fit(a, fmt)
            assert ctx.get(out) == ref and ctx.get(over) == count

    run_comb(m, bench)


@pytest.mark.parametrize("width", sorted(TAPS))
def test_lfsr_twin_draws_the_golden_sequence(width):
    seed = (0x5DEECE66D % ((1 << width) - 1)) + 1
    dut = LFSR(width, seed)
    ref = GoldenLFSR(width, seed)
    plan = [1, 0, 1, 1, 0, 0, 1] * 5  # advance or hold

    async def bench(ctx):
        assert ctx.get(dut.state) == seed
        for adv in plan:
            assert ctx.get(dut.next) == int(ref.copy().draws(1)[0])
            ctx.set(dut.advance, adv)
            await ctx.tick()
            if adv:
                ref.draws(1)
            assert ctx.get(dut.state) == ref.state
        ctx.set(dut.advance, 1)
        ctx.set(dut.load, 1)  # load wins over advance
        ctx.set(dut.load_value, 12345 % (1 << width) or 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        ref.state = 12345 % (1 << width) or 1
        assert ctx.get(dut.state) == ref.state

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("width", (16, 32))
def test_streams_sharing_one_draw_network_each_draw_their_own_sequence(width):
    """Two streams behind one draw network (a layer's round:<l> and round:<l>.clf): whichever
    is selected draws; the other holds, and each follows its own golden sequence."""
    from amaranth import Module, Signal

    from localsnn.rtl.lfsr import shared_draw

    seeds = (3, 77)
    m = Module()
    m.submodules.a = a = LFSR(width, seeds[0], shared=True)
    m.submodules.b = b = LFSR(width, seeds[1], shared=True)
    sel = Signal()
    draw = shared_draw(m, [a, b], sel)
    refs = [GoldenLFSR(width, s) for s in seeds]
    plan = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0] * 3

    async def bench(ctx):
        for k in plan:
            ctx.set(sel, k)
            ctx.set((a, b)[k].advance, 1)
            ctx.set((a, b)[1 - k].advance, 0)
            assert ctx.get(draw) == int(refs[k].copy().draws(1)[0])
            await ctx.tick()
            refs[k].draws(1)
            assert (ctx.get(a.state), ctx.get(b.state)) == (refs[0].state, refs[1].state)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    with pytest.raises(ValueError, match="shared=True"):
        shared_draw(Module(), [LFSR(width, 1), LFSR(width, 2)], Signal())


@pytest.mark.parametrize("pipeline", ["full", "compact"])
def test_surrogate_lut_and_neuron_step_match_golden(pipeline):
    """The neuron datapath of one lane (surrogate table, leak, integrate: ``integrate_stages``
    in a loop's pipeline) against golden."""
    import numpy as np

    from localsnn import spec as S
    from localsnn.golden.model import LayerConstants
    from localsnn.golden.model import surrogate as g_surrogate
    from localsnn.rtl.loop import Loop
    from localsnn.rtl.neuron import integrate_stages, surrogate

    for name in ("digits", "digits-decolle"):
        spec = S.load(name)
        G = LayerConstants(spec, 0)
        nrn = G.neurons
        u = Signal(rfixed.fmt_shape(nrn.potential))
        o = Signal()
        cur = Signal(signed(24))
        sg = Signal(16)
        m = Module()
        lp = Loop(m, "t", 1, 1, outer_max=1, inner_max=1, pipeline=pipeline)
        un, on, n = integrate_stages(lp, 0, nrn, u, o, cur, 0)  # I = R(cur, 0) = cur
        lp.close()
        m.d.comb += sg.eq(surrogate(u, nrn.theta, nrn.lut, nrn.lut_shift))
        rng = random.Random(11)

        async def bench(ctx):
            for _ in range(200):
                a = rng.randrange(nrn.potential.min_int, nrn.potential.max_int + 1)
                b = rng.randrange(2)
                c = rng.randrange(-(1 << 20), 1 << 20)
                ctx.set(u, a)
                ctx.set(o, b)
                ctx.set(cur, c)
                assert ctx.get(sg) == int(g_surrogate(np.array([a]), nrn.theta, nrn.lut, nrn.lut_shift)[0])
                for _ in range(lp.phys(n)):  # the inputs held, the result after the pipeline's clocks
                    await ctx.tick()
                gu, go, _ = nrn.integrate(np.array([a]), np.array([b]), np.array([c]))
                assert (ctx.get(un), ctx.get(on)) == (int(gu[0]), int(go[0]))

        sim = Simulator(m)
        sim.add_clock(1e-6)
        sim.add_testbench(bench)
        sim.run()


def test_crc8_gateware_equals_the_host_crc():
    """The bridge's CRC (Amaranth's catalogued CRC-8/SMBUS, ``rtl.bridge.CRC8``) equals the host's
    ``chip.crc8``: its ``compute()``, and the gateware Processor fed one byte per clock, on
    random messages of 0 to 40 bytes (and the catalogue's check string)."""
    import random

    from amaranth.sim import Simulator

    from localsnn.chip import crc8
    from localsnn.rtl.bridge import CRC8

    rng = random.Random(1)
    messages = [b"123456789"] + [bytes(rng.randrange(256) for _ in range(rng.randrange(41))) for _ in range(60)]
    assert all(CRC8.compute(msg) == crc8(msg) for msg in messages)
    proc = CRC8.create()
    sim = Simulator(proc)
    sim.add_clock(1e-6)
    seen = []

    async def bench(ctx):
        for msg in messages:
            ctx.set(proc.start, 1)
            await ctx.tick()
            ctx.set(proc.start, 0)
            for byte in msg:
                ctx.set(proc.valid, 1)
                ctx.set(proc.data, byte)
                await ctx.tick()
            ctx.set(proc.valid, 0)
            seen.append((ctx.get(proc.crc), crc8(msg)))

    sim.add_testbench(bench)
    sim.run()
    assert len(seen) == len(messages) and all(a == g for a, g in seen) and seen[0][1] == 0xF4


@pytest.mark.parametrize("pipeline", ["full", "compact"])
@pytest.mark.parametrize("throttle", [False, True])
def test_loop_pipeline_delays_each_pair_by_its_stages(pipeline, throttle):
    """A loop whose pairs carry a value through stages 0 -> 6, with a 'memory read' declared in
    stage 3 (so boundary 4 is a clock in both pipelines): every pair leaves the last stage in
    order, with its own value, ``phys(6)`` clocks after it entered, and ``done`` pulses with the
    final pair; the delays are registers in the full pipeline and wires in the compact one
    where no read forces a clock."""
    from localsnn.rtl.loop import Loop

    m = Module()
    lp = Loop(m, "t", 3, 2, outer_max=3, inner_max=2, throttle=throttle, pipeline=pipeline)
    lp.clocked(3)
    s0 = lp.stage(0)
    tag0 = s0.outer * 2 + s0.inner  # the pair's number, computed in stage 0
    tag3 = lp.delay(tag0, 3, 0)
    tag6 = lp.delay(tag3 + 100, 3, 3)  # an operation in stage 3, carried to stage 6
    last = lp.stage(6)
    lp.close()
    depth = {"full": 6, "compact": 3}[pipeline]  # compact: clocks at boundaries 1, 2 and 4
    assert lp.phys(6) == depth and lp.depth == depth + 1

    async def bench(ctx):
        ctx.set(lp.start, 1)
        await ctx.tick()
        ctx.set(lp.start, 0)
        seen, clock, done_at = [], 0, None
        while clock < 40:
            if ctx.get(last.valid):
                seen.append((clock, ctx.get(tag6)))
            if ctx.get(lp.done):
                done_at = clock
            await ctx.tick()
            clock += 1
        gap = 2 if throttle else 1
        assert [v for _, v in seen] == [100 + k for k in range(6)]
        assert [c for c, _ in seen] == [depth + gap * k for k in range(6)]
        assert done_at == seen[-1][0]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_a_throttled_loop_refuses_a_write_an_even_number_of_clocks_after_its_read():
    from localsnn.errors import BadValueError
    from localsnn.rtl.loop import Loop

    for pipeline, ok, bad in (("full", (2, 5), (2, 6)), ("compact", (2, 5), None)):
        lp = Loop(Module(), "t", 2, 2, outer_max=2, inner_max=2, throttle=True, pipeline=pipeline)
        lp.clocked(2)
        lp.check_rw(*ok)
        if bad:
            with pytest.raises(BadValueError, match="odd"):
                lp.check_rw(*bad)
    with pytest.raises(BadValueError, match="pipeline 'deep'"):
        Loop(Module(), "t", 2, 2, outer_max=2, inner_max=2, pipeline="deep")
