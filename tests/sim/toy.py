"""A toy Amaranth design with the port shape of the real localsnn top level.

It exists only to exercise the co-simulation infrastructure (``sim/``): the stream drivers,
the register-bus master, the build cache and the lint step.

Ports (Amaranth flattens interface members with ``__``)::

    clk, rst                                   clock, active-high synchronous reset
    i__valid  i__ready  i__payload[16]         input stream (amaranth.lib.stream rules)
    o__valid  o__ready  o__payload[24]         output stream
    bus__addr[8] bus__w_data[32] bus__w_en bus__r_en bus__r_data[32] bus__ack

Behaviour: every input word ``x`` leaves as ``(x + OFFSET) mod 2**24``, in order, through a
small FIFO (so output backpressure propagates to ``i__ready`` after a few words).

Registers (word addresses on ``bus__addr``):

========  ======  =====================================================================
address   access  meaning
========  ======  =====================================================================
0x00      RO      ``ID`` = ``TOY_ID``
0x01      RW      ``OFFSET`` (24 bits; the upper 8 bits read as 0). A write is held off
                  (``ack`` delayed) while the FIFO holds words: "busy".
0x02      RO      ``COUNT``: input words accepted since reset (32 bits, wraps)
0x03      RO      ``LEVEL``: words waiting in the FIFO
0x04      RW      ``SCRATCH`` (32 bits)
other     RO      read 0, writes ignored
========  ======  =====================================================================

Bus protocol: the master drives ``addr`` (and ``w_data``) and raises exactly one of
``w_en``/``r_en``; it holds them until it samples ``ack == 1`` on a rising edge (``r_data``
is valid in that same cycle) and drops the enable in the next cycle. Here ``ack`` is high
before the 3rd to 6th rising edge after the enable is raised (a free-running counter decides),
plus any busy time.
"""

from amaranth import Module, Signal, unsigned
from amaranth.back import verilog
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

TOY_ID = 0x544F5901  # "TOY" + version 1
IN_WIDTH = 16
OUT_WIDTH = 24
ADDR_WIDTH = 8
FIFO_DEPTH = 4

REG_ID, REG_OFFSET, REG_COUNT, REG_LEVEL, REG_SCRATCH = range(5)


class BusSignature(wiring.Signature):
    """The register bus, seen from the master (the design uses ``In(BusSignature(...))``)."""

    def __init__(self, addr_width: int):
        super().__init__({
            "addr": Out(addr_width),
            "w_data": Out(32),
            "w_en": Out(1),
            "r_en": Out(1),
            "r_data": In(32),
            "ack": In(1),
        })


class Toy(wiring.Component):
    def __init__(self, toy_id: int = TOY_ID):
        self.toy_id = toy_id
        super().__init__({
            "i": In(stream.Signature(unsigned(IN_WIDTH))),
            "o": Out(stream.Signature(unsigned(OUT_WIDTH))),
            "bus": In(BusSignature(ADDR_WIDTH)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=OUT_WIDTH, depth=FIFO_DEPTH)

        offset = Signal(OUT_WIDTH)
        count = Signal(32)
        scratch = Signal(32)

        # Datapath: add OFFSET on the way into the FIFO.
        m.d.comb += [
            q.w_data.eq(self.i.payload + offset),
            q.w_en.eq(self.i.valid),
            self.i.ready.eq(q.w_rdy),
            self.o.payload.eq(q.r_data),
            self.o.valid.eq(q.r_rdy),
            q.r_en.eq(self.o.ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += count.eq(count + 1)

        # Register bus with a variable ack latency.
        phase = Signal(2)  # free-running; decides each access's extra wait
        wait = Signal(2)
        m.d.sync += phase.eq(phase + 1)

        read_mux = Signal(32)
        with m.Switch(self.bus.addr):
            with m.Case(REG_ID):
                m.d.comb += read_mux.eq(self.toy_id)
            with m.Case(REG_OFFSET):
                m.d.comb += read_mux.eq(offset)
            with m.Case(REG_COUNT):
                m.d.comb += read_mux.eq(count)
            with m.Case(REG_LEVEL):
                m.d.comb += read_mux.eq(q.level)
            with m.Case(REG_SCRATCH):
                m.d.comb += read_mux.eq(scratch)

        busy = (self.bus.addr == REG_OFFSET) & self.bus.w_en & (q.level != 0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.sync += self.bus.ack.eq(0)
                with m.If(self.bus.w_en | self.bus.r_en):
                    m.d.sync += wait.eq(phase)
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(wait != 0):
                    m.d.sync += wait.eq(wait - 1)
                with m.Elif(~busy):
                    m.d.sync += [
                        self.bus.ack.eq(1),
                        self.bus.r_data.eq(read_mux),
                    ]
                    with m.If(self.bus.w_en):
                        with m.Switch(self.bus.addr):
                            with m.Case(REG_OFFSET):
                                m.d.sync += offset.eq(self.bus.w_data)
                            with m.Case(REG_SCRATCH):
                                m.d.sync += scratch.eq(self.bus.w_data)
                    m.next = "ACK"
            with m.State("ACK"):
                # ack is 1 during this cycle; the master drops its enable after this edge.
                m.d.sync += self.bus.ack.eq(0)
                m.next = "IDLE"
        return m


def toy_verilog(name: str = "toy", *, toy_id: int = TOY_ID) -> str:
    """Verilog text of the toy design (another ``toy_id`` gives different text, for cache tests)."""
    return verilog.convert(Toy(toy_id), name=name, emit_src=False)
