"""Pieces shared by the layer engines: the debug (register-bus) port, lane-addressed memories,
event lists."""

from __future__ import annotations

from amaranth import Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from localsnn.chip import INDEX_BITS, REGION_BITS  # the register bus's address fields
from localsnn.errors import BadValueError
from localsnn.rtl.fixed import fmt_shape


def dbg_signature() -> wiring.Signature:
    """A memory-access port as seen by the bus master (the top): one element at a time."""
    return wiring.Signature({
        "region": Out(REGION_BITS),
        "index": Out(INDEX_BITS),
        "w_data": Out(32),
        "w_en": Out(1),
        "r_en": Out(1),
        "r_data": In(32),
        "ack": In(1),
    })


def log2_exact(n: int) -> int:
    k = n.bit_length() - 1
    if 1 << k != n:
        raise BadValueError(f"{n} is not a power of two")
    return k


class _PortView:
    """What the engines see of a port of a single-port :class:`LaneMemory`: the ``addr``,
    ``data`` and ``en`` of an Amaranth memory port, as plain signals."""

    def __init__(self, name: str, depth: int, shape, en_width: int, en_init: int) -> None:
        self.addr = Signal(range(depth), name=f"{name}_addr")
        self.data = Signal(shape, name=f"{name}_data")
        self.en = Signal(en_width, init=en_init, name=f"{name}_en")


class LaneMemory:
    """A memory of ``depth`` words of ``lanes`` elements, with one read and one write port
    (write enable per lane), shared between the engine and the debug bus.

    ``region``: the bus region number, or None for a memory the bus cannot reach. ``block_ram``
    asks synthesis for block RAM even where the memory is small enough for flip-flops (which,
    with their read multiplexers, cost more logic cells than the block does). An element's
    bus index is ``word * lanes + lane``; for 2-D arrays stored row by row with ``words_per_row``
    words, that is ``row * words_per_row * lanes + column``.

    ``single_port``: one address for reading and writing, for an iCE40UP's SPRAM (256 kbit
    blocks of 16 K x 16 bits, write enables per 4-bit nibble, no initial contents). The engines
    still see a read port ``rd`` and a write port ``wr``; the memory takes the write address in
    a clock where a lane is written and the read address otherwise, and reads nothing while it
    writes (the data output keeps its value, as SPRAM's does). So a phase must not read and
    write this memory in the same clock (``Loop(throttle=True)``), and the memory has no
    initial contents: ``init`` is refused and the host writes the weights over the bus
    (``host_init`` in the memory map). Each lane is stored in a whole number of nibbles, so a
    lane can be written alone.
    """

    def __init__(self, m: Module, name: str, elem_shape, lanes: int, depth: int, *, init=None, region: int | None = None, fields: dict | None = None, writable: bool = True, second_read: bool = False, block_ram: bool = False, single_port: bool = False) -> None:
        self.name = name
        self.lanes = lanes
        self.depth = max(depth, 2)  # a 1-deep memory would have a 0-bit address (a [-1:0] wire in Verilog)
        self.elem = elem_shape
        self.region = region
        self.fields = fields  # {region: field name} for struct elements shown as several regions
        self.single_port = single_port
        shape = data.ArrayLayout(elem_shape, lanes)
        if single_port:
            if init is not None or second_read or not writable:
                raise BadValueError(f"memory {name!r}: a single-port memory has one read port, a write port and no initial contents")
            self._single_port(m, name, shape)
            return
        rows = None
        if init is not None:
            rows = [list(r) for r in init]
        self.mem = memory.Memory(shape=shape, depth=self.depth, init=rows or [], attrs={"ram_style": "block"} if block_ram else None)
        m.submodules[name] = self.mem
        self.wr = self.mem.write_port(granularity=1) if writable else None
        # no read-during-write bypass: no phase reads a word in the cycle it is written
        self.rd = self.mem.read_port()
        self.rd2 = self.mem.read_port() if second_read else None  # for another stage

    def _single_port(self, m: Module, name: str, shape) -> None:
        bits = Shape.cast(self.elem).width
        stored = -(-bits // 4) * 4  # each lane in whole nibbles
        self.mem = memory.Memory(shape=data.ArrayLayout(unsigned(stored), self.lanes), depth=self.depth, init=[], attrs={"ram_style": "huge"})
        m.submodules[name] = self.mem
        wr, rd = self.mem.write_port(granularity=1), self.mem.read_port()
        self.wr = _PortView(f"{name}_wr", self.depth, shape, self.lanes, 0)
        self.rd = _PortView(f"{name}_rd", self.depth, shape, 1, 1)
        self.rd2 = None
        writing = Signal(name=f"{name}_writing")
        addr = Signal(range(self.depth), name=f"{name}_addr")
        m.d.comb += [
            writing.eq(self.wr.en != 0),
            addr.eq(Mux(writing, self.wr.addr, self.rd.addr)),
            wr.addr.eq(addr),
            rd.addr.eq(addr),
            wr.en.eq(self.wr.en),
            rd.en.eq(self.rd.en & ~writing),
        ]
        for k in range(self.lanes):
            m.d.comb += [
                wr.data[k].eq(Value.cast(self.wr.data[k])),
                Value.cast(self.rd.data[k]).eq(rd.data[k][:bits]),
            ]


def elem_value(elem, field: str | None) -> Value:
    """The integer of one element (or one field of a struct element), for the bus."""
    v = elem[field] if field is not None else elem
    return Value.cast(v)


def sext32(v) -> Value:
    v = Value.cast(v)
    return v.as_signed() if v.shape().signed else v


__all__ = ["INDEX_BITS", "REGION_BITS", "LaneMemory", "dbg_signature", "elem_value", "fmt_shape", "log2_exact", "sext32", "signed", "unsigned", "Signal"]
