"""cocotb tests of the toy design (tests/sim/toy.py), run by tests/sim/test_infra.py.

Knobs come from the environment (set through ``run_cocotb(extra_env=...)``):

INFRA_SEED     seed of the data and of the drivers' idle/stall patterns (default 0)
INFRA_IDLE     StreamSource idle probability (default 0)
INFRA_STALL    StreamSink stall probability (default 0)
INFRA_WORDS    number of stream words (default 200)
INFRA_TOY_ID   expected ID register (default toy.TOY_ID)
INFRA_DELIBERATE_FAIL  "1" enables test_deliberate_failure (checks that failures propagate)
INFRA_HANG     "1" enables test_hang (never ends; checks run_cocotb's wall-clock timeout)
INFRA_XZ       "1" enables test_unknown_values_are_named (on tests/sim/test_icarus.py's xz module)
"""

import os
import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, Timer

import toy
from localsnn.sim.drivers import BusMaster, BusTimeout, StreamSink, StreamSource, UnknownValue, read, reset, start_clock

SEED = int(os.environ.get("INFRA_SEED", "0"))
IDLE = float(os.environ.get("INFRA_IDLE", "0"))
STALL = float(os.environ.get("INFRA_STALL", "0"))
WORDS = int(os.environ.get("INFRA_WORDS", "200"))
TOY_ID = int(os.environ.get("INFRA_TOY_ID", str(toy.TOY_ID)), 0)
OUT_MASK = (1 << toy.OUT_WIDTH) - 1


async def setup(dut):
    start_clock(dut)
    await reset(dut)
    src = StreamSource(dut, "i", dut.clk, idle_prob=IDLE, seed=SEED)
    sink = StreamSink(dut, "o", dut.clk, stall_prob=STALL, seed=SEED + 1)
    bus = BusMaster(dut, "bus", dut.clk, timeout=200)
    return src, sink, bus


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_registers(dut):
    """Bus reads and writes, register masks, variable ack latency."""
    _, _, bus = await setup(dut)
    rng = random.Random(SEED)
    assert await bus.read(toy.REG_ID) == TOY_ID
    latencies = set()
    for _ in range(20):
        v = rng.getrandbits(32)
        await ClockCycles(dut.clk, rng.randrange(4))  # vary the ack phase
        await bus.write(toy.REG_SCRATCH, v)
        latencies.add(bus.last_latency)
        await ClockCycles(dut.clk, rng.randrange(4))
        assert await bus.read(toy.REG_SCRATCH) == v
        latencies.add(bus.last_latency)
    await bus.write(toy.REG_OFFSET, 0xFFABCDEF)
    assert await bus.read(toy.REG_OFFSET) == 0xABCDEF, "OFFSET keeps 24 bits"
    assert await bus.read_many([0x05, 0x80, 0xFF]) == [0, 0, 0]
    await bus.write(0x80, 0x1234)  # ignored
    assert await bus.read_many([toy.REG_COUNT, toy.REG_LEVEL]) == [0, 0]
    assert len(latencies) > 1, f"ack latency never varied: {latencies}"
    dut._log.info("bus ack latencies seen: %s", sorted(latencies))


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_stream(dut):
    """Every word arrives, in order, plus OFFSET; idle and stall cycles; bus reads meanwhile."""
    src, sink, bus = await setup(dut)
    rng = random.Random(SEED)
    offset = rng.getrandbits(24)
    await bus.write(toy.REG_OFFSET, offset)
    words = [rng.getrandbits(toy.IN_WIDTH) for _ in range(WORDS)]
    expected = [(w + offset) & OUT_MASK for w in words]

    ready_low = 0

    async def watch_ready():
        nonlocal ready_low
        while True:
            await RisingEdge(dut.clk)
            ready_low += int(dut.i__valid.value) and not int(dut.i__ready.value)

    async def poll_count():
        seen = []
        while src.sent < WORDS:
            seen.append(await bus.read(toy.REG_COUNT))
        assert seen == sorted(seen), "COUNT must never decrease"
        return seen

    watcher = cocotb.start_soon(watch_ready())
    sender = cocotb.start_soon(src.send_many(words))
    poller = cocotb.start_soon(poll_count())
    got = await sink.recv_many(WORDS)
    await sender
    counts = await poller
    watcher.cancel()

    for k, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"word {k}: got {g:#x}, expected {e:#x} (input {words[k]:#x})"
    assert len(got) == WORDS
    assert await bus.read(toy.REG_COUNT) == WORDS
    assert await bus.read(toy.REG_LEVEL) == 0
    if STALL >= 0.3:
        assert ready_low > 0, "random backpressure never reached the input"
    dut._log.info("idle=%s stall=%s: %d words, input stalled %d cycles, %d COUNT polls",
                  IDLE, STALL, WORDS, ready_low, len(counts))


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def test_hold_and_inspect(dut):
    """sink.hold keeps the output pending: the FIFO fills, the bus still answers reads,
    a busy write times out with BusTimeout, and everything drains after release."""
    src, sink, bus = await setup(dut)
    sink.hold = True
    words = list(range(1, 11))
    sender = cocotb.start_soon(src.send_many(words))
    assert await sink.peek() == words[0]
    await ClockCycles(dut.clk, 5)
    assert await sink.peek() == words[0], "peek must not take the word"
    receiver = cocotb.start_soon(sink.recv_many(len(words)))
    await ClockCycles(dut.clk, 30)
    level = await bus.read(toy.REG_LEVEL)
    assert level == toy.FIFO_DEPTH, f"FIFO should be full, LEVEL={level}"
    assert await bus.read(toy.REG_COUNT) == level == src.sent
    assert int(dut.i__ready.value) == 0 and int(dut.o__valid.value) == 1
    try:
        await bus.write(toy.REG_OFFSET, 5, timeout=20)
    except BusTimeout as e:
        dut._log.info("expected: %s", e)
    else:
        raise AssertionError("OFFSET write must wait while the FIFO is busy")
    sink.hold = False
    assert await receiver == words
    await sender
    await bus.write(toy.REG_OFFSET, 5)  # FIFO empty again: acknowledged
    assert await bus.read(toy.REG_OFFSET) == 5
    try:  # all taken: a peek with a limit gives up after it (a stalled chip)
        await sink.peek(limit_cycles=20)
    except TimeoutError as err:
        assert str(err) == "no output word within 20 clocks", str(err)
    else:
        raise AssertionError("peek(limit_cycles=20) returned a word nobody sent")


@cocotb.test(skip=os.environ.get("INFRA_DELIBERATE_FAIL") != "1")
async def test_deliberate_failure(dut):
    """Fails on purpose (only when selected) so the pytest side can check propagation."""
    start_clock(dut)
    await reset(dut)
    assert 1 + 1 == 3, "deliberate failure from infra_tb"


@cocotb.test(skip=os.environ.get("INFRA_HANG") != "1")
async def test_hang(dut):
    """Runs (in simulated time) forever, only when selected: run_cocotb(timeout_s=...) must kill it."""
    start_clock(dut)
    while True:
        await ClockCycles(dut.clk, 1000)


@cocotb.test(skip=os.environ.get("INFRA_XZ") != "1")
async def test_unknown_values_are_named(dut):
    """The xz module (4-state simulators): ``q`` is never assigned (X), ``y`` follows the
    undriven input ``a`` (Z); reading either raises UnknownValue naming it; ``y`` reads once
    ``a`` is driven."""
    await Timer(1, unit="ns")
    for signal, name, bits in ((dut.q, "q", "XXXX"), (dut.y, "y", "Z")):
        try:
            value = read(signal)
        except UnknownValue as err:
            assert f"{name} is " in str(err) and bits in str(err).upper() and "X or Z" in str(err), str(err)
        else:
            raise AssertionError(f"{name} read as {value}")
    dut.a.value = 1
    await Timer(1, unit="ns")
    assert read(dut.y) == 1
