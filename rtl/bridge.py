"""The board bridge: a UART, frames with a CRC, and the chip's streams and register bus behind it.

``BridgeTop`` is the chip (:class:`~localsnn.rtl.top.Network`) with a serial line instead of
streams and a bus: ports ``rx`` (in, idle high) and ``tx`` (out). ``BoardTop`` puts it on an
amaranth-boards platform's ``uart`` resource, with the baud divisor from the board's clock.

The frame format, the commands and the status codes are defined once, in
:mod:`localsnn.chip` (the chip's contract, which the host in :mod:`localsnn.board` uses too);
this file builds their gateware. A request is buffered
whole and checked (length, CRC, command, payload size) before anything is applied:

* SOF: bytes other than the start byte are skipped;
* HDR, PAY, CRC: the command, the length (larger than the buffer: drained, answered
  BAD_LENGTH), the payload into the buffer, the CRC (wrong: answered BAD_CRC). A gap of
  ``FRAME_TIMEOUT_BITS`` bit times inside a frame ends it: answered TRUNCATED;
* CHECK: unknown command (BAD_COMMAND), wrong payload size (BAD_LENGTH), else execute:
  WRITE and SEND first apply then answer; READ, PEEK and RECV answer with their data as it
  comes (the length is known in advance).

While a command waits for the chip (a bus access, a stream word), a byte on ``rx`` aborts it
(the host gave up waiting); the bridge then reads that byte as the start of a new request.
"""

from __future__ import annotations

from contextlib import contextmanager

from amaranth import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import io, memory, stream, wiring
from amaranth.lib.crc import catalog as crc_catalog
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out
from localsnn.errors import BadValueError
from localsnn.rtl.top import Network, bus_signature

from localsnn.chip import (
    BAD_COMMAND,
    BAD_CRC,
    BAD_LENGTH,
    FRAME_TIMEOUT_BITS,
    OK,
    PEEK,
    READ,
    RECV,
    REQUEST_START,
    RESPONSE_START,
    SEND,
    TRUNCATED,
    WRITE,
    FrameFormat,
    frame_format,
)


#: the frames' CRC (:func:`localsnn.chip.crc8`: polynomial 0x07, initial value 0, no reflection,
#: no final XOR) is Amaranth's catalogued CRC-8/SMBUS, one byte per clock
CRC8 = crc_catalog.CRC8_SMBUS(data_width=8)


class UARTRx(wiring.Component):
    """8N1 receiver. ``rx``: the line (idle high), synchronised into the clock domain. Each byte
    with a good stop bit appears on ``data`` for one clock (no backpressure). Bits are sampled
    in their middle: half a bit after the start bit's falling edge, then every ``divisor``
    clocks."""

    def __init__(self, divisor: int):
        if divisor < 8:
            raise BadValueError(f"UART divisor {divisor}: at least 8 clocks per bit are needed")
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8, always_ready=True))})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(d))
        bit = Signal(range(8))
        shreg = Signal(8)
        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(~line):  # still low in the middle of the start bit
                    m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                    m.next = "DATA"
                with m.Else():  # a glitch
                    m.next = "IDLE"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), timer.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(shreg)]
                    m.next = "IDLE"
                with m.Else():  # framing error: drop the byte, wait for the line to go idle
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter: a start bit, ``data``'s byte LSB first, a stop bit, ``divisor`` clocks each."""

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        timer = Signal(range(d))
        left = Signal(range(10))
        shreg = Signal(9)
        with m.FSM(name="uart_tx"):
            with m.State("IDLE"):
                m.d.comb += self.data.ready.eq(1)
                with m.If(self.data.valid):
                    m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.data.payload, 1)), left.eq(9), timer.eq(d - 1)]
                    m.next = "BUSY"
            with m.State("BUSY"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(left == 0):  # the stop bit has had its time
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(shreg[1:]), left.eq(left - 1), timer.eq(d - 1)]
        return m


class Bridge(wiring.Component):
    """Frames from ``rx_data`` (bytes) to the chip's ``i`` stream and ``bus``, and from its
    ``o`` stream and ``bus`` back to ``tx_data`` (see the module docstring and
    :mod:`localsnn.chip`)."""

    def __init__(self, fmt: FrameFormat, in_width: int, out_width: int, timeout: int):
        for name, n in (("in_bytes", fmt.in_bytes), ("out_bytes", fmt.out_bytes), ("max_payload", fmt.max_payload)):
            if n & (n - 1):
                raise BadValueError(f"{name} = {n} must be a power of two")
        self.fmt = fmt
        self.timeout = timeout
        self.in_width = in_width
        self.out_width = out_width
        super().__init__({
            "rx_data": In(stream.Signature(8, always_ready=True)),
            "tx_data": Out(stream.Signature(8)),
            "i": Out(stream.Signature(in_width)),
            "o": In(stream.Signature(out_width)),
            "bus": Out(bus_signature()),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        P = fmt.max_payload
        m.submodules.buf = buf = memory.Memory(shape=8, depth=P, init=[])
        bw = buf.write_port()
        br = buf.read_port()

        got = self.rx_data.valid
        byte = self.rx_data.payload
        cmd = Signal(8)
        length = Signal(16)
        pos = Signal(16)
        m.submodules.rx_crc = rx_crc = CRC8.create()  # of the request being received
        m.submodules.tx_crc = tx_crc = CRC8.create()  # of the response being sent
        status = Signal(8)
        addr = Signal(32)
        count = Signal(16)
        word = Signal(32)
        k = Signal(3)
        resp_len = Signal(16)
        gap = Signal(range(self.timeout + 1))
        sending = Signal()  # the words fetched from the buffer go to i (SEND), else to the bus (WRITE)
        # a frame's address has 32 bits, the bus fewer: above it there is nothing (reads give 0,
        # writes are ignored), rather than the bus's low bits aliasing onto a register or a weight
        on_bus = addr[len(self.bus.addr):] == 0

        # a gap inside a frame: counted from the last byte
        in_frame = Signal()
        with m.If(got | ~in_frame):
            m.d.sync += gap.eq(0)
        with m.Elif(gap != self.timeout):
            m.d.sync += gap.eq(gap + 1)
        timed_out = in_frame & (gap == self.timeout)

        def emit(value, next_state, *, count_crc=True, restart_crc=False, extra=()):
            m.d.comb += [self.tx_data.valid.eq(1), self.tx_data.payload.eq(value)]
            with m.If(self.tx_data.ready):
                if count_crc:
                    m.d.comb += [tx_crc.valid.eq(1), tx_crc.data.eq(value)]
                if restart_crc:
                    m.d.comb += tx_crc.start.eq(1)
                m.d.sync += list(extra)
                if next_state is not None:
                    m.next = next_state

        def answer(code):  # a response with no payload
            m.d.sync += [status.eq(code), resp_len.eq(0), k.eq(0)]
            m.next = "RESP_HDR"

        def abort_on_new_byte():  # the host gave up waiting: its new request starts here
            with m.If(got):
                m.d.comb += rx_crc.start.eq(1)
                m.d.sync += [pos.eq(0), cmd.eq(0)]
                m.next = "SOF"
                with m.If(byte == REQUEST_START):
                    m.next = "HDR"

        @contextmanager
        def frame_byte(*, checked=True):
            """Inside a frame: a gap ends it as TRUNCATED; the body runs for each byte that
            comes (``checked``: the byte goes into the CRC and ``pos`` counts it)."""
            m.d.comb += in_frame.eq(1)
            with m.If(timed_out):
                answer(TRUNCATED)
            with m.Elif(got):
                if checked:
                    m.d.comb += [rx_crc.valid.eq(1), rx_crc.data.eq(byte)]
                    m.d.sync += pos.eq(pos + 1)
                yield

        with m.FSM(name="bridge") as fsm:
            with m.State("SOF"):
                with m.If(got & (byte == REQUEST_START)):
                    m.d.comb += rx_crc.start.eq(1)
                    m.d.sync += [pos.eq(0), cmd.eq(0)]  # cut off before its command: echo 0
                    m.next = "HDR"
            with m.State("HDR"):
                with frame_byte():
                    with m.Switch(pos):
                        with m.Case(0):
                            m.d.sync += cmd.eq(byte)
                        with m.Case(1):
                            m.d.sync += length[:8].eq(byte)
                        with m.Case(2):
                            n = Cat(length[:8], byte)
                            m.d.sync += [length[8:].eq(byte), pos.eq(0)]
                            with m.If(n > P):
                                m.next = "DRAIN"
                            with m.Elif(n == 0):
                                m.next = "CRC"
                            with m.Else():
                                m.next = "PAY"
            with m.State("PAY"):
                with frame_byte():
                    m.d.comb += [bw.addr.eq(pos), bw.data.eq(byte), bw.en.eq(1)]
                    with m.Switch(pos):  # the fixed fields: address (4 bytes), count (2 bytes)
                        for j in range(4):
                            with m.Case(j):
                                m.d.sync += addr[8 * j:8 * j + 8].eq(byte)
                        for j in range(2):
                            with m.Case(4 + j):
                                m.d.sync += count[8 * j:8 * j + 8].eq(byte)
                    with m.If(pos == length - 1):
                        m.next = "CRC"
            with m.State("CRC"):
                with frame_byte(checked=False):
                    with m.If(byte != rx_crc.crc):
                        answer(BAD_CRC)
                    with m.Else():
                        m.next = "CHECK"
            with m.State("DRAIN"):  # a length the buffer cannot hold: skip to the end of the frame
                m.d.comb += in_frame.eq(1)
                with m.If(timed_out):
                    answer(BAD_LENGTH)
            with m.State("CHECK"):
                ib = fmt.in_bytes.bit_length() - 1
                ob = fmt.out_bytes.bit_length() - 1
                m.d.sync += [status.eq(OK), k.eq(0)]
                with m.Switch(cmd):
                    with m.Case(READ):
                        with m.If((length == 6) & (count != 0) & (count <= 0x3FFF)):
                            m.d.sync += resp_len.eq(count << 2)
                            m.next = "RESP_HDR"
                        with m.Else():
                            answer(BAD_LENGTH)
                    with m.Case(WRITE):
                        with m.If((length >= 8) & (length[:2] == 0)):
                            m.d.sync += [pos.eq(4), sending.eq(0), resp_len.eq(0)]
                            m.next = "FETCH"
                        with m.Else():
                            answer(BAD_LENGTH)
                    with m.Case(SEND):  # at least one word, whole words
                        with m.If(((length[:ib] == 0) if ib else 1) & (length != 0)):
                            m.d.sync += [pos.eq(0), sending.eq(1), resp_len.eq(0)]
                            m.next = "FETCH"
                        with m.Else():
                            answer(BAD_LENGTH)
                    with m.Case(PEEK):
                        with m.If(length == 0):
                            m.d.sync += [resp_len.eq(fmt.out_bytes), count.eq(1)]
                            m.next = "RESP_HDR"
                        with m.Else():
                            answer(BAD_LENGTH)
                    with m.Case(RECV):  # its count is the payload's first two bytes
                        n = addr[:16]
                        with m.If((length == 2) & (n != 0) & (n <= (0xFFFF >> ob))):
                            m.d.sync += [count.eq(n), resp_len.eq(n << ob)]
                            m.next = "RESP_HDR"
                        with m.Else():
                            answer(BAD_LENGTH)
                    with m.Default():
                        answer(BAD_COMMAND)

            # ---- WRITE, SEND: bytes from the buffer, shifted in at the top of `word` ---------------
            with m.State("FETCH"):
                m.d.comb += br.addr.eq(pos)
                m.next = "TAKE"
            with m.State("TAKE"):
                m.d.sync += [word.eq(Cat(word[8:], br.data)), pos.eq(pos + 1), k.eq(k + 1)]
                last = Mux(sending, fmt.in_bytes - 1, 3)
                with m.If(k == last):
                    m.d.sync += k.eq(0)
                    m.next = "PUSH"
                with m.Else():
                    m.next = "FETCH"
            with m.State("PUSH"):
                value = word[32 - 8 * fmt.in_bytes:]
                with m.If(sending):
                    m.d.comb += [self.i.valid.eq(1), self.i.payload.eq(value[: self.in_width])]
                with m.Elif(on_bus):
                    m.d.comb += [self.bus.addr.eq(addr), self.bus.w_data.eq(word), self.bus.w_en.eq(1)]
                with m.If(Mux(sending, self.i.ready, self.bus.ack | ~on_bus)):
                    m.d.sync += addr.eq(addr + 1)
                    with m.If(pos == length):
                        answer(OK)
                    with m.Else():
                        m.next = "FETCH"
                with m.Else():
                    abort_on_new_byte()

            # ---- the response: header, payload (READ, PEEK, RECV), CRC -------------------------------
            with m.State("RESP_HDR"):
                header = Cat(Const(RESPONSE_START, 8), status, cmd, resp_len)
                hb = header.word_select(k, 8)
                with m.If(k == 0):
                    emit(hb, None, count_crc=False, restart_crc=True, extra=[k.eq(1)])
                with m.Else():
                    emit(hb, None, extra=[k.eq(k + 1)])
                    with m.If(self.tx_data.ready & (k == 4)):
                        m.d.sync += k.eq(0)
                        with m.If(status != OK):
                            m.next = "RESP_CRC"
                        with m.Elif(cmd == READ):
                            m.next = "RD_BUS"
                        with m.Elif((cmd == PEEK) | (cmd == RECV)):
                            m.next = "OUT_WAIT"
                        with m.Else():
                            m.next = "RESP_CRC"
            with m.State("RD_BUS"):
                m.d.comb += [self.bus.addr.eq(addr), self.bus.r_en.eq(on_bus)]
                with m.If(~on_bus):
                    m.d.sync += [word.eq(0), k.eq(0)]
                    m.next = "RD_OUT"
                with m.Elif(self.bus.ack):
                    m.d.sync += [word.eq(self.bus.r_data), k.eq(0)]
                    m.next = "RD_OUT"
                with m.Else():
                    abort_on_new_byte()
            with m.State("RD_OUT"):
                emit(word[:8], None, extra=[word.eq(word >> 8), k.eq(k + 1)])
                with m.If(self.tx_data.ready & (k == 3)):
                    m.d.sync += [addr.eq(addr + 1), count.eq(count - 1), k.eq(0)]
                    m.next = "RD_NEXT"
            with m.State("RD_NEXT"):
                m.next = "RD_BUS"
                with m.If(count == 0):
                    m.next = "RESP_CRC"
            with m.State("OUT_WAIT"):  # PEEK leaves the word pending; RECV takes it
                with m.If(self.o.valid):
                    m.d.comb += self.o.ready.eq(cmd == RECV)
                    m.d.sync += [word.eq(self.o.payload), k.eq(0)]
                    m.next = "OUT_BYTES"
                with m.Else():
                    abort_on_new_byte()
            with m.State("OUT_BYTES"):
                emit(word[:8], None, extra=[word.eq(word >> 8), k.eq(k + 1)])
                with m.If(self.tx_data.ready & (k == fmt.out_bytes - 1)):
                    m.d.sync += [count.eq(count - 1), k.eq(0)]
                    with m.If(count == 1):
                        m.next = "RESP_CRC"
                    with m.Else():
                        m.next = "OUT_WAIT"
            with m.State("RESP_CRC"):
                emit(tx_crc.crc, "SOF", count_crc=False)
        self._fsm = fsm
        return m


class BridgeTop(wiring.Component):
    """The chip behind a UART bridge: ports ``rx`` and ``tx`` only (plus the clock domain).
    ``divisor``: clocks per bit; ``spram``: see :class:`~localsnn.rtl.top.Network`."""

    def __init__(self, spec, *, lanes: int = 1, params=None, divisor: int = 104, spram: bool = False, pipeline: str = "full"):
        self.spec = spec
        self.divisor = divisor
        self.net = Network(spec, lanes=lanes, params=params, spram=spram, pipeline=pipeline)
        self.fmt = frame_format(spec)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def memory_map(self) -> list[dict]:
        return self.net.memory_map()

    def elaborate(self, platform):
        m = Module()
        net = self.net
        m.submodules.net = net
        m.submodules.uart_rx = rx = UARTRx(self.divisor)
        m.submodules.uart_tx = tx = UARTTx(self.divisor)
        m.submodules.bridge = br = Bridge(self.fmt, net.in_width, 1 + net.out_data, timeout=FRAME_TIMEOUT_BITS * self.divisor)
        wiring.connect(m, rx.data, br.rx_data)
        wiring.connect(m, br.tx_data, tx.data)
        wiring.connect(m, br.i, net.i)
        wiring.connect(m, net.o, br.o)
        wiring.connect(m, br.bus, net.bus)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        return m


class BoardTop(Elaboratable):
    """``BridgeTop`` on a board: its ``uart`` resource, the default clock, ``baud`` bits/s."""

    def __init__(self, spec, *, lanes: int = 1, params=None, baud: int = 115200, spram: bool = False, pipeline: str = "full"):
        self.spec = spec
        self.spram = spram
        self.pipeline = pipeline
        self.lanes = lanes
        self.params = params
        self.baud = baud

    def divisor(self, clk_hz: float) -> int:
        d = round(clk_hz / self.baud)
        if d < 8 or abs(clk_hz / d - self.baud) / self.baud > 0.02:
            raise BadValueError(f"a {clk_hz / 1e6:g} MHz clock cannot make {self.baud} baud within 2 % (divisor {d})")
        return d

    def elaborate(self, platform):
        m = Module()
        m.submodules.chip = chip = BridgeTop(self.spec, lanes=self.lanes, params=self.params, divisor=self.divisor(platform.default_clk_frequency), spram=self.spram, pipeline=self.pipeline)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [chip.rx.eq(rx.i), tx.o.eq(chip.tx)]
        return m


__all__ = ["CRC8", "BoardTop", "Bridge", "BridgeTop", "UARTRx", "UARTTx"]
