"""cocotb drivers for the localsnn top-level ports (imported by cocotb test modules).

Port naming follows Amaranth's flattening of interface members with ``__``:

* stream ``<p>``: ``<p>__valid``, ``<p>__ready``, ``<p>__payload`` (amaranth.lib.stream rules:
  a word moves on a rising edge where valid and ready are both 1);
* register bus ``<p>``: ``<p>__addr``, ``<p>__w_data``, ``<p>__w_en``, ``<p>__r_en``,
  ``<p>__r_data``, ``<p>__ack``. The master raises one enable with addr (and w_data), holds
  everything until it samples ``ack == 1`` on a rising edge (``r_data`` is valid in that
  cycle) and drops the enable right after that edge.

Timing discipline, shared by every helper: inputs are driven just after a rising edge; outputs
are sampled in the ``ReadOnly`` phase just *before* the next rising edge (the values that edge
sees), then the helper waits for that edge. Every coroutine here therefore returns just after a
rising edge, which is where the next call must start: call them right after ``reset()``,
``await RisingEdge(dut.clk)``, ``ClockCycles`` or another helper, never from ``ReadOnly``.

Only cocotb (2.x) and the standard library are used.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, First, Lock, ReadOnly, RisingEdge, Timer

__all__ = ["BusMaster", "BusTimeout", "SerialLine", "StreamSink", "StreamSource", "UnknownValue", "read", "reset", "start_clock"]

CLOCK_PERIOD_NS = 10

#: every input of the localsnn top (``rtl.top.Network``), driven to 0 from reset on: an input
#: nothing drives is Z, and in a 4-state simulator (Icarus) X spreads from it
INPUTS = ("i__valid", "i__payload", "o__ready", "bus__addr", "bus__w_data", "bus__w_en", "bus__r_en")


class UnknownValue(AssertionError):
    """An output that the testbench reads holds X or Z bits (a 4-state simulator's unknown or
    undriven value: a real bug of the design or of its drive, never a value to guess)."""


def read(signal) -> int:
    """The value of ``signal`` as an unsigned int; :class:`UnknownValue`, naming the signal,
    its bits and the simulated time, where any bit is X or Z."""
    value = signal.value
    try:
        return int(value)
    except ValueError:
        from cocotb.utils import get_sim_time

        name = getattr(signal, "_path", None) or getattr(signal, "_name", "?")
        raise UnknownValue(f"{name} is {value} (X or Z bits) at {get_sim_time('ns'):g} ns") from None


def start_clock(dut, period_ns: float = CLOCK_PERIOD_NS, *, clk: str = "clk"):
    """Start a free-running clock on ``dut.<clk>``; returns the cocotb ``Clock``."""
    clock = Clock(getattr(dut, clk), period_ns, unit="ns")
    clock.start()
    return clock


async def reset(dut, cycles: int = 4, *, clk: str = "clk", rst: str = "rst",
                quiet: Iterable[str] = INPUTS):
    """Hold the active-high synchronous reset ``dut.<rst>`` for ``cycles`` rising edges.

    The inputs named in ``quiet`` that exist on ``dut`` (default: every input of the top) are
    driven to 0 first (so nothing transfers during or right after reset, and no input is left
    undriven). Returns just after the first edge with reset low.
    """
    clock = getattr(dut, clk)
    for name in quiet:
        if hasattr(dut, name):
            getattr(dut, name).value = 0
    getattr(dut, rst).value = 1
    for _ in range(cycles):
        await RisingEdge(clock)
    getattr(dut, rst).value = 0
    await RisingEdge(clock)


class StreamSource:
    """Drives an input stream ``<prefix>__valid/ready/payload`` of ``dut``.

    ``idle_prob``: before each word, leave valid low for a geometric number of cycles (each
    extra idle cycle with probability ``idle_prob``), drawn from ``random.Random(seed)``. Once
    valid is raised it stays high, with the payload stable, until the word is taken.
    """

    def __init__(self, dut, prefix: str, clk, *, idle_prob: float = 0.0, seed: int = 0):
        if not 0.0 <= idle_prob < 1.0:
            raise ValueError(f"idle_prob must be in [0, 1), got {idle_prob}")
        self.clk = clk
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.idle_prob = idle_prob
        self.rng = random.Random(seed)
        self.sent = 0  # words transferred so far
        self.valid.value = 0

    async def send(self, value: int) -> None:
        """Transfer one word; returns just after the edge that took it."""
        while self.idle_prob and self.rng.random() < self.idle_prob:
            self.valid.value = 0
            await RisingEdge(self.clk)
        self.payload.value = value
        self.valid.value = 1
        while True:
            await ReadOnly()
            if read(self.ready):
                await RisingEdge(self.clk)
                break
            # not ready: sleep until ready rises (it changes only after an edge, or with valid)
            # instead of waking up every cycle; then sample it again before the next edge
            await RisingEdge(self.ready)
        self.valid.value = 0
        self.sent += 1

    async def send_many(self, values: Iterable[int]) -> None:
        for v in values:
            await self.send(v)


class StreamSink:
    """Receives from an output stream ``<prefix>__valid/ready/payload`` of ``dut``.

    ``stall_prob``: in each cycle of a ``recv()``, ready is low with this probability
    (``random.Random(seed)``). ``hold = True`` keeps ready low entirely (even inside a pending
    ``recv()``) until it is set back to False, e.g. to inspect the design while its output is
    pending. Outside ``recv()`` ready is low, so no word is ever lost.
    """

    def __init__(self, dut, prefix: str, clk, *, stall_prob: float = 0.0, seed: int = 0, period_ns: float = CLOCK_PERIOD_NS):
        if not 0.0 <= stall_prob < 1.0:
            raise ValueError(f"stall_prob must be in [0, 1), got {stall_prob}")
        self.clk = clk
        self.period_ns = period_ns
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.stall_prob = stall_prob
        self.rng = random.Random(seed)
        self.hold = False
        self.received = 0  # words transferred so far
        self.ready.value = 0

    async def recv(self) -> int:
        """Wait for one word and return it (as an unsigned int)."""
        while True:
            rdy = not self.hold and not (self.stall_prob and self.rng.random() < self.stall_prob)
            self.ready.value = int(rdy)
            await ReadOnly()
            valid = read(self.valid)
            word = read(self.payload) if rdy and valid else None
            await RisingEdge(self.clk)
            if word is not None:
                self.ready.value = 0
                self.received += 1
                return word

    async def peek(self, limit_cycles: int | None = None) -> int:
        """Wait until a word is pending (valid high) and return it *without* taking it.

        Ready stays low, so the word stays pending (stream rules keep valid and payload
        stable until the transfer); a later ``recv()`` takes it. ``limit_cycles``: raise
        ``TimeoutError`` when no word is pending after that many clock periods (a stalled
        chip; one timer, not a wake-up per clock).
        """
        self.ready.value = 0
        deadline = None if limit_cycles is None else Timer(limit_cycles * self.period_ns, unit="ns")
        while True:
            await ReadOnly()
            if read(self.valid):
                word = read(self.payload)
                await RisingEdge(self.clk)
                return word
            # nothing pending: sleep until valid rises (just after the edge that raises it)
            # instead of waking up every cycle while the core works; then sample it before the
            # next edge, as a poll in every cycle would have
            if deadline is None:
                await RisingEdge(self.valid)
            elif await First(RisingEdge(self.valid), deadline) is deadline:
                raise TimeoutError(f"no output word within {limit_cycles} clocks")

    async def recv_many(self, n: int) -> list[int]:
        return [await self.recv() for _ in range(n)]


class BusTimeout(TimeoutError):
    """The register bus did not acknowledge within the timeout."""


class BusMaster:
    """Master of the register bus ``<prefix>__addr/w_data/w_en/r_en/r_data/ack``.

    ``timeout``: cycles to wait for ``ack`` before raising :class:`BusTimeout` (the enable is
    dropped first, so the bus is idle afterwards). Accesses from concurrent coroutines are
    serialised by a lock.
    """

    def __init__(self, dut, prefix: str, clk, *, timeout: int = 1000):
        self.clk = clk
        self.prefix = prefix
        self.addr = getattr(dut, f"{prefix}__addr")
        self.w_data = getattr(dut, f"{prefix}__w_data")
        self.w_en = getattr(dut, f"{prefix}__w_en")
        self.r_en = getattr(dut, f"{prefix}__r_en")
        self.r_data = getattr(dut, f"{prefix}__r_data")
        self.ack = getattr(dut, f"{prefix}__ack")
        self.timeout = timeout
        self.last_latency = 0  # cycles from the enable to ack of the last access
        self._lock = Lock()
        self.w_en.value = 0
        self.r_en.value = 0

    async def _access(self, addr: int, data: int | None, timeout: int | None) -> int:
        limit = self.timeout if timeout is None else timeout
        async with self._lock:
            self.addr.value = addr
            self.w_data.value = 0 if data is None else data
            (self.r_en if data is None else self.w_en).value = 1
            for cycle in range(1, limit + 1):
                await ReadOnly()
                ack = read(self.ack)
                r_data = read(self.r_data) if ack else 0
                await RisingEdge(self.clk)
                if ack:
                    self.w_en.value = 0
                    self.r_en.value = 0
                    self.last_latency = cycle
                    return r_data
            self.w_en.value = 0
            self.r_en.value = 0
            kind = "read" if data is None else f"write of {data:#x}"
            raise BusTimeout(
                f"{self.prefix}: {kind} at address {addr:#x} not acknowledged in {limit} cycles"
            )

    async def read(self, addr: int, *, timeout: int | None = None) -> int:
        return await self._access(addr, None, timeout)

    async def write(self, addr: int, data: int, *, timeout: int | None = None) -> None:
        await self._access(addr, data, timeout)

    async def read_many(self, addrs: Iterable[int]) -> list[int]:
        return [await self.read(a) for a in addrs]


class SerialLine:
    """The host's end of a simulated 8N1 serial line to ``dut.<rx>`` / ``dut.<tx>``, ``divisor``
    clock periods per bit: the link of :class:`localsnn.board.Host` in co-simulation.

    ``write`` drives bytes onto ``rx`` bit by bit (``gap_bits`` idle bits after each byte); a
    monitor decodes ``tx``, sampling each bit in its middle, into a queue that ``read`` takes
    from. Timers, not clock counts, keep the Python work per bit to one callback. A byte with a
    bad stop bit is counted in ``framing_errors`` and dropped.
    """

    def __init__(self, dut, divisor: int, *, rx: str = "rx", tx: str = "tx", period_ns: float = CLOCK_PERIOD_NS, timeout_bits: int = 200_000, gap_bits: int = 0):
        self.rx = getattr(dut, rx)
        self.tx = getattr(dut, tx)
        self.bit_ns = divisor * period_ns
        self.timeout_bits = timeout_bits
        self.gap_bits = gap_bits
        self.received = bytearray()
        self.framing_errors = 0
        self.sent = 0
        self._arrived = Event()
        self.rx.value = 1
        self._monitor = cocotb.start_soon(self._watch())

    async def _watch(self) -> None:
        while True:
            await FallingEdge(self.tx)
            await Timer(self.bit_ns / 2, unit="ns")
            if read(self.tx):  # a glitch, not a start bit
                continue
            value = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                value |= read(self.tx) << i
            await Timer(self.bit_ns, unit="ns")
            if read(self.tx):
                self.received.append(value)
                self._arrived.set()
            else:
                self.framing_errors += 1

    async def write(self, data: bytes) -> None:
        for b in bytes(data):
            for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                self.rx.value = bit
                await Timer(self.bit_ns, unit="ns")
            if self.gap_bits:
                await Timer(self.bit_ns * self.gap_bits, unit="ns")
            self.sent += 1

    async def idle(self, bits: int) -> None:
        """Leave the line idle for ``bits`` bit times."""
        self.rx.value = 1
        await Timer(self.bit_ns * bits, unit="ns")

    async def read(self, n: int) -> bytes:
        """The next ``n`` bytes from the device; LinkTimeout when they do not come within
        ``timeout_bits`` bit times of the last byte."""
        from localsnn.chip import LinkTimeout

        while len(self.received) < n:
            self._arrived.clear()
            have = len(self.received)
            await First(self._arrived.wait(), Timer(self.bit_ns * self.timeout_bits, unit="ns"))
            if len(self.received) == have:
                raise LinkTimeout(f"the device sent {have} of {n} expected bytes, then nothing for {self.timeout_bits} bit times")
        out = bytes(self.received[:n])
        del self.received[:n]
        return out

    def drain(self) -> bytes:
        """Everything received and not yet read."""
        out = bytes(self.received)
        self.received.clear()
        return out
