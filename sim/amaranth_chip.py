"""The harness's ``Chip`` interface on Amaranth's own simulator (no Verilator needed): quick
checks of small networks in unit tests, and a way to debug the RTL in Python."""

from __future__ import annotations

import random

from amaranth.sim import Simulator


class AmaranthChip:
    """Drives a :class:`~localsnn.rtl.top.Network` from inside an Amaranth testbench.

    ``idle`` / ``stall``: probabilities of an idle cycle on the input stream and of a cycle of
    backpressure on the output stream (seeded), to show they change nothing but timing.
    """

    def __init__(self, ctx, dut, *, idle: float = 0.0, stall: float = 0.0, seed: int = 0, timeout: int = 2_000_000) -> None:
        self.ctx = ctx
        self.dut = dut
        self.rng = random.Random(seed)
        self.idle = idle
        self.stall = stall
        self.timeout = timeout

    async def send(self, words):
        ctx, s = self.ctx, self.dut.i
        for w in words:
            while self.idle and self.rng.random() < self.idle:
                ctx.set(s.valid, 0)
                await ctx.tick()
            ctx.set(s.valid, 1)
            ctx.set(s.payload, w)
            for _ in range(self.timeout):
                ready = ctx.get(s.ready)
                await ctx.tick()  # the word is taken at this edge if ready was high before it
                if ready:
                    break
            else:
                raise TimeoutError("the input stream never became ready")
        ctx.set(s.valid, 0)

    async def peek(self) -> int:
        ctx, o = self.ctx, self.dut.o
        ctx.set(o.ready, 0)
        for _ in range(self.timeout):
            if ctx.get(o.valid):
                return ctx.get(o.payload)
            await ctx.tick()
        raise TimeoutError("no output word")

    async def accept(self) -> None:
        ctx, o = self.ctx, self.dut.o
        while self.stall and self.rng.random() < self.stall:
            await ctx.tick()
        ctx.set(o.ready, 1)
        await ctx.tick()
        ctx.set(o.ready, 0)

    async def read(self, addr: int) -> int:
        ctx, b = self.ctx, self.dut.bus
        ctx.set(b.addr, addr)
        ctx.set(b.r_en, 1)
        for _ in range(self.timeout):
            if ctx.get(b.ack):
                value = ctx.get(b.r_data)
                await ctx.tick()
                ctx.set(b.r_en, 0)
                await ctx.tick()
                return value
            await ctx.tick()
        raise TimeoutError(f"bus read of {addr:#x} never acknowledged")

    async def write(self, addr: int, value: int) -> None:
        ctx, b = self.ctx, self.dut.bus
        ctx.set(b.addr, addr)
        ctx.set(b.w_data, value & 0xFFFFFFFF)
        ctx.set(b.w_en, 1)
        for _ in range(self.timeout):
            if ctx.get(b.ack):
                await ctx.tick()
                ctx.set(b.w_en, 0)
                await ctx.tick()
                return
            await ctx.tick()
        raise TimeoutError(f"bus write of {addr:#x} never acknowledged")


def run(dut, body, *, vcd: str | None = None):
    """Simulate ``dut`` with the async testbench ``body(chip_factory)``; returns its result."""
    result = {}
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        result["value"] = await body(ctx)

    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return result["value"]
