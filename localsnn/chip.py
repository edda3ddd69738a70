"""The chip's contract: everything both sides of the wire agree on, in pure Python.

The gateware (``localsnn.rtl``), the co-simulation (``localsnn.sim``), the host
(``localsnn.board``) and the CLI import these definitions; this module imports no Amaranth and
nothing of ``rtl/``, so a host or a tool reads the chip's interface without building it.

* the register bus: ``addr = region << INDEX_BITS | index`` (:func:`address`), region 0 the
  control registers (:data:`REGISTERS`), regions ``1 + LAYER_REGIONS * layer + k`` the memories
  of layer ``layer`` in :data:`MEM_KEYS` order, element by element;
* :func:`memory_map`: which memory is in which region, its shape, row stride, format, whether
  the host may write it and whether the chip starts without it (``host_init``), computed from
  the spec alone (a test holds it equal to what ``rtl.top.Network`` elaborates);
* the streams: :func:`io_widths`, a sample's input words (:func:`input_words`), the STEP /
  DECISION tag of an output word;
* the UART frames: start bytes, commands, status codes, :func:`crc8`, :func:`frame_format`,
  :func:`encode_request` (``docs/board.md``);
* the LFSR streams in register order (:func:`lfsr_stream_names`);
* what of a spec the chip implements (:func:`chip_problems`, :func:`check_chip`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from localsnn.errors import BadValueError, LocalsnnError, SpecError
from localsnn.golden.lfsr import stream_names

# -- the register bus -----------------------------------------------------------------------------

#: width of the element index inside one region
INDEX_BITS = 22
#: width of the region number
REGION_BITS = 8
#: width of a bus address (a frame's address has 32 bits: above these there is nothing)
BUS_ADDR_BITS = REGION_BITS + INDEX_BITS
#: data width of the register bus: every value the host reads or writes is one such word
BUS_DATA_BITS = 32
#: bus regions per layer: layer ``l``'s memory ``MEM_KEYS[k]`` is region ``1 + LAYER_REGIONS * l + k``
LAYER_REGIONS = 16
#: the ID register's value, "LSNN"
ID_WORD = 0x4C534E4E

#: control registers (region 0): name -> (index, access, meaning)
REGISTERS = {
    "ID": (0, "r", f"0x{ID_WORD:08X} ('LSNN')"),
    "CTRL": (1, "rw", "bit 0: learning enabled (reset 1), taken at the start of each sample; bit 1: LOCKSTEP, every step through every layer and out before the next begins (reset 0: layers pipelined over steps)"),
    "LEARN_MASK": (2, "rw", "bit l: layer l learns (reset: each layer's spec 'learn')"),
    "LR_SHIFT": (3, "rw", "learning rate 2**-LR_SHIFT (reset: the spec's); writes outside the allowed range are ignored"),
    "STATUS": (4, "r", "bit 0: running a sample; bit 1: the weights are in memories without initial contents (SPRAM) and no weight has been written since reset: write them first; bits 8..31: samples completed"),
    "STEP_CYCLES": (5, "r", "clock cycles between the last two STEP words (clocks in which only a STEP word waiting for o is left excluded)"),
    "SAMPLE_CYCLES": (6, "r", "clock cycles of the time steps of the last sample (as STEP_CYCLES counts them)"),
    "DECISION": (7, "r", "the last decision"),
    "STEP": (8, "r", "STEP words of this sample taken so far"),
    "LFSR_BASE": (16, "rw", "LFSR streams from index 16 in lfsr_stream_names() order: read the state, write a seed"),
    "PHASE_BASE": (64, "r", f"cycles per phase of the last step: 64 + {LAYER_REGIONS}*layer + phase"),
}

#: the memories of a layer on the bus, region = 1 + LAYER_REGIONS * layer + position in this tuple
MEM_KEYS = ("w", "u", "o", "cw", "cu", "co", "e", "ce", "bias", "r", "p", "q", "h", "y")

#: the phases' pipelines the RTL builds (rtl/loop.py): ``full``, a register between every two
#: stages of a phase (one multiplier or one add / compare chain per clock: the fast chip);
#: ``compact``, registers only after the stages that read memories (the stages between merge
#: into one clock: fewer flip-flops, for a small FPGA). The values are the same; the clocks per
#: phase differ by the pipeline's fill, and the bus and the host see no difference.
PIPELINES = ("full", "compact")

#: the phases of a step of each layer engine, in order (their cycle counters are registers
#: ``PHASE_BASE + LAYER_REGIONS * layer + k``)
PHASES = {
    "lif": ("FWD", "COMPACT", "CFWD", "LIVE", "CLIVE", "CDRAW", "BACKPROP", "CUPD", "HUPD", "CFTRACE", "FTRACE"),
    "decolle": ("PLIST", "FWD", "COMPACT", "READOUT", "BACKPROP", "HUPD", "BUPD", "LIVE", "TRACES"),
}
#: the weight memories (bus keys) that a build with SPRAM keeps without initial contents; DECOLLE's
#: readout G and feedback H are fixed
SPRAM_KEYS = {"lif": ("w", "cw"), "decolle": ("w",)}


def address(region: int, index: int = 0) -> int:
    """The bus address of element ``index`` of ``region``."""
    return region << INDEX_BITS | index


def layer_regions(layer: int) -> dict[str, int]:
    """Memory key -> bus region of layer ``layer`` (every key; :func:`memory_map` says which
    memories the layer has)."""
    return {k: 1 + LAYER_REGIONS * layer + n for n, k in enumerate(MEM_KEYS)}


def engine(spec, layer: int) -> str:
    """The layer engine (a key of :data:`PHASES`) of layer ``layer``."""
    return "decolle" if spec.layers[layer].neuron.model == "decolle" else "lif"


def region_elements(entry: dict) -> int:
    """The bus indices a memory-map entry answers: ``rows * row_stride`` for a 2-D memory (row
    r, column c at ``r * row_stride + c``; columns from ``shape[1]`` up to the stride are
    padding lanes), ``shape[0]`` for a 1-D one. Every index from there up reads 0 and ignores
    writes, as every address outside the regions does."""
    shape = entry["shape"]
    return shape[0] * entry["row_stride"] if len(shape) == 2 else shape[0]


def layer_memory_map(spec, i: int, lanes: int, spram: bool = False) -> list[dict]:
    """The bus regions of layer ``i`` with ``lanes`` lanes (see :func:`memory_map`)."""
    ls = spec.layers[i]
    reg = layer_regions(i)
    n, c, fan_in = ls.size, spec.classes, spec.fan_in(i)
    stride, cstride = -(-n // lanes) * lanes, -(-c // lanes) * lanes
    kind = engine(spec, i)

    def mem(key, name, shape, fmt, *, stride_=None, writable=True):
        e = {"name": f"layer{i}.{name}", "region": reg[key], "shape": list(shape)}
        if stride_ is not None:
            e["row_stride"] = stride_
        e.update({"format": fmt, "writable": writable})
        if spram and key in SPRAM_KEYS[kind]:
            e["host_init"] = True
        return e

    w = ls.weight.describe()
    if kind == "decolle":
        tr = ls.neuron.trace.describe()
        return [
            mem("w", "w", (fan_in, n), w, stride_=stride),
            mem("bias", "bias", (n,), w),
            mem("u", "u", (n,), ls.neuron.potential.describe()),
            mem("o", "o", (n,), "u1.0"),
            mem("r", "r", (n,), tr),
            mem("p", "p", (fan_in,), tr),
            mem("q", "q", (fan_in,), tr),
            mem("cw", "clf_w", (n, c), ls.classifier.weight.describe(), stride_=cstride),
            mem("h", "feedback", (n, c), ls.classifier.feedback.describe(), stride_=cstride),
            mem("y", "y", (c,), "readout", writable=False),
        ]
    out = [
        mem("w", "w", (fan_in, n), w, stride_=stride),
        mem("u", "u", (n,), ls.neuron.potential.describe()),
        mem("o", "o", (n,), "u1.0"),
        mem("cw", "clf_w", (n, c), ls.classifier.weight.describe(), stride_=cstride),
        mem("cu", "clf_u", (c,), ls.classifier.neuron.potential.describe()),
        mem("co", "clf_o", (c,), "u1.0"),
    ]
    if ls.learn and spec.rule.learns and spec.rule.traces:
        t = spec.learning.trace.describe()
        out += [mem("e", "e", (fan_in, n), t, stride_=stride), mem("ce", "clf_e", (n, c), t, stride_=cstride)]
    return out


def memory_map(spec, lanes: int, spram: bool = False) -> list[dict]:
    """The chip's bus for ``spec`` at ``lanes`` lanes (``spram``: the weights in memories
    without initial contents, marked ``host_init``): the registers, then per layer its
    memories and its phase counters. ``localsnn generate`` writes it as JSON."""
    out = [{"name": "registers", "region": 0, "registers": {k: {"index": v[0], "access": v[1], "meaning": v[2]} for k, v in REGISTERS.items()}}]
    for i in range(len(spec.layers)):
        out += layer_memory_map(spec, i, lanes, spram)
        out.append({"name": f"layer{i}.phases", "phases": list(PHASES[engine(spec, i)]), "registers_from": REGISTERS["PHASE_BASE"][0] + LAYER_REGIONS * i})
    return out


def to_signed(v: int, bits: int = BUS_DATA_BITS) -> int:
    """A bus word read back as the signed integer it holds (elements are sign-extended)."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


# -- what the chip implements ---------------------------------------------------------------------


def chip_problems(spec, lanes: int = 1) -> list:
    """What of ``spec`` the chip does not implement, as :class:`~localsnn.errors.SpecError` objects
    naming the field and the reason (empty: the RTL builds it and equals golden).

    The golden model and the float trainer take every valid spec; the chip also needs
    ``learning.accumulate = 1`` (it applies every update at the end of its step), every value
    the host reads or writes over the register bus at most :data:`BUS_DATA_BITS` bits wide,
    and every memory small enough for the bus's ``INDEX_BITS``-bit element index.
    """
    out = []
    if spec.learning.accumulate != 1:
        out.append(SpecError("learning.accumulate", f"{spec.learning.accumulate}: the chip applies every weight change at the end of its step; allowed for the RTL: 1 (golden and the float model also take 2 to timesteps)"))
    wide = []
    if spec.rule.traces:
        wide.append(("learning.trace", spec.learning.trace.width))
    for i, layer in enumerate(spec.layers):
        where = f"layers[{i}]"
        wide += [(f"{where}.weight", layer.weight.width), (f"{where}.neuron.potential", layer.neuron.potential.width), (f"{where}.classifier.weight", layer.classifier.weight.width)]
        if layer.classifier.kind == "spiking":
            wide.append((f"{where}.classifier.neuron.potential", layer.classifier.neuron.potential.width))
        else:
            # the readout Y never exceeds its worst case (size x |G|), however wide its accumulator
            (_, _), (y_bits, _) = spec.accumulator_needs(i)
            wide += [(f"{where}.classifier.feedback", layer.classifier.feedback.width), (f"{where}.classifier.weight (the readout Y = sum of up to {layer.size} of its values)", y_bits)]
        if layer.neuron.model == "decolle":
            wide.append((f"{where}.neuron.trace", layer.neuron.trace.width))
        words = -(-layer.size // lanes) * lanes
        for name, rows, cols in (("weights", spec.fan_in(i), words), ("classifier weights", layer.size, -(-spec.classes // lanes) * lanes)):
            if rows * cols > 1 << INDEX_BITS:
                out.append(SpecError(f"{where}.size", f"{layer.size}: the layer's {name} ({rows} x {cols} elements at {lanes} lanes) exceed the register bus's {1 << INDEX_BITS} elements per memory"))
    for field, bits in wide:
        if bits > BUS_DATA_BITS:
            out.append(SpecError(field, f"{bits} bits is wider than the chip's {BUS_DATA_BITS}-bit register bus, through which the host reads and writes it; allowed for the RTL: up to {BUS_DATA_BITS} bits (golden takes up to 64)"))
    return out


def check_chip(spec, lanes: int = 1) -> None:
    """Raise the first of :func:`chip_problems` (a SpecError), if any."""
    problems = chip_problems(spec, lanes)
    if problems:
        raise problems[0]



# -- loading memories through the bus (host and co-simulation alike) ------------------------------


async def write_region(chip, entry: dict, values, pad: bool = False) -> None:
    """Write a whole memory region (an entry of the memory map) into ``chip``, a :class:`Host`
    or any harness ``Chip`` (``write``; ``write_many`` where it has one). Row by row; with
    ``pad``, each row of a 2-D memory filled with zeros up to its ``row_stride``, so that the
    padding lanes of its words hold 0 too (a memory without initial contents: an iCE40UP's
    SPRAM holds arbitrary bits at power-up, a 4-state simulator X); without, they keep what
    they hold (the zeros of the memories' initial contents)."""
    values = np.asarray(values)
    if values.shape != tuple(entry["shape"]):
        raise BridgeError(f"{entry['name']}: values of shape {values.shape}, the memory holds {tuple(entry['shape'])}")
    base = address(entry["region"])
    rows = values[None, :] if values.ndim == 1 else values
    if pad and values.ndim == 2:
        rows = np.pad(rows, ((0, 0), (0, entry["row_stride"] - rows.shape[1])))
    for r, row in enumerate(rows):
        addr = base + r * entry.get("row_stride", 0)
        if hasattr(chip, "write_many"):
            await chip.write_many(addr, row.tolist())
        else:
            for c, v in enumerate(row.tolist()):
                await chip.write(addr + c, int(v))


async def write_params(chip, memory_map: list[dict], params, only=None, pad=None) -> list[str]:
    """Write ``params`` (golden :class:`~localsnn.golden.params.Params`) into every memory of
    ``memory_map`` that holds one of their arrays (``layer<i>.w``, ``.clf_w``, DECOLLE's
    ``.bias`` and ``.feedback``), or into those of them ``only(entry)`` selects; return their
    names. How a host loads weights, and how a co-simulation gives a build the parameters of
    its test (the build itself carries the spec's initial ones, so that tests differing only
    in weights share it). ``pad(entry)``: whether to write the padding lanes of its words with
    zeros (:func:`write_region`)."""
    names = []
    for entry in memory_map:
        if "shape" not in entry or (only is not None and not only(entry)):
            continue
        layer, key = entry["name"].split(".", 1)
        arrays = params.layers[int(layer.removeprefix("layer"))].arrays()
        if key in arrays:
            await write_region(chip, entry, arrays[key], pad=pad is not None and pad(entry))
            names.append(entry["name"])
    return names


async def load_host_init(chip, memory_map: list[dict], params) -> list[str]:
    """Write the memories the chip starts without (``host_init`` in its memory map: the weights
    of a build with SPRAM) from ``params``, the padding lanes of their words with zeros (they
    start arbitrary too); return their names."""
    return await write_params(chip, memory_map, params, only=lambda entry: entry.get("host_init"), pad=lambda entry: True)


async def load_weights_if_missing(chip, memory_map: list[dict], params) -> list[str]:
    """What ``localsnn board run`` does first: if the chip says it has no weights (STATUS bit 1:
    a build with the weights in SPRAM, none written since reset), write ``params`` into the
    memories ``memory_map`` marks ``host_init``; return their names ([] when it had them). A
    chip whose STATUS still says so afterwards does not keep to its contract: BridgeError."""
    status_reg = memory_map[0]["registers"]["STATUS"]["index"]
    if not await chip.read(status_reg) >> 1 & 1:
        return []
    names = await load_host_init(chip, memory_map, params)
    if await chip.read(status_reg) >> 1 & 1:
        raise BridgeError(f"the chip still reports no weights (STATUS bit 1) after {', '.join(names) or 'nothing'} were written")
    return names


# -- the streams ----------------------------------------------------------------------------------

#: the tag above an output word's data bits: a STEP word (the classifier spikes of one step) or
#: the DECISION word (the winning class) after the last step
STEP, DECISION = 0, 1


def event_index_bits(spec) -> int:
    """Bits of an input index in the first layer's event list (and in an ``events`` input word)."""
    return max((spec.inputs - 1).bit_length(), 1)


def io_widths(spec) -> tuple[int, int]:
    """(input-stream payload bits, output-stream data bits) of the chip for ``spec``: an input
    word holds a label, a pixel in the encoding format or, for an ``events`` encoding, a step's
    event count or one event (:func:`input_words`); an output word holds one spike bit per
    class or a class index, plus one bit telling STEP (0) from DECISION (1) above them."""
    C, enc = spec.classes, spec.encoding
    if enc.per_step:
        word = max(event_index_bits(spec) + (0 if enc.binary else enc.format.width), spec.inputs.bit_length())
    else:
        word = enc.format.width
    return max(word, C.bit_length()), max(C, max((C - 1).bit_length(), 1))


def input_words(spec, x, label: int | None) -> list[list[int]]:
    """The input-stream words of one sample, in the chunks a host sends them: chunk ``t`` before
    it waits for the STEP word of step ``t``.

    Pixel encodings: one chunk, the label word (a class; ``classes`` for "no label": nothing
    learns) and then one word per input, the pixel quantized into the encoding format.

    ``events``: one chunk per step, the label word first in chunk 0. A step is its event count
    ``k`` and then ``k`` event words, the inputs with a nonzero value in ascending order: the
    index ``j`` (a 1-bit format: a spike), or ``j | value << event_index_bits`` (a count). The
    chip takes a step's words when its first layer is ready for that step; it drops an event
    whose index is not an input or whose value is 0, and one beyond ``inputs`` in a step.
    """
    enc = spec.encoding
    head = [spec.classes if label is None else int(label)]
    x = np.asarray(x)
    if x.shape != spec.sample_shape:
        raise BadValueError(f"a sample of spec {spec.name!r} has shape {spec.sample_shape}; got {x.shape}")
    if not enc.per_step:
        return [head + [int(v) for v in x]]
    shift = event_index_bits(spec)
    chunks = []
    for t, row in enumerate(x):
        idx = np.flatnonzero(row)
        words = [int(j) for j in idx] if enc.binary else [int(j) | int(row[j]) << shift for j in idx]
        chunks.append((head if t == 0 else []) + [len(words)] + words)
    return chunks


def lfsr_stream_names(spec) -> list[str]:
    """The LFSR streams in register order (from ``REGISTERS["LFSR_BASE"]``), as golden names
    them (:func:`localsnn.golden.lfsr.stream_names`)."""
    return stream_names(len(spec.layers))


# -- the UART frames ------------------------------------------------------------------------------


class BridgeError(LocalsnnError):
    """The bridge refused a request or sent a response that does not check out."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class LinkTimeout(BridgeError):
    """No (complete) response within the link's timeout."""


REQUEST_START = 0xA5
RESPONSE_START = 0x5A

READ, WRITE, SEND, PEEK, RECV = 0x01, 0x02, 0x03, 0x04, 0x05
COMMANDS = {READ: "READ", WRITE: "WRITE", SEND: "SEND", PEEK: "PEEK", RECV: "RECV"}

OK, BAD_CRC, BAD_COMMAND, BAD_LENGTH, TRUNCATED = 0, 1, 2, 3, 4
STATUS_NAMES = {OK: "OK", BAD_CRC: "BAD_CRC", BAD_COMMAND: "BAD_COMMAND", BAD_LENGTH: "BAD_LENGTH", TRUNCATED: "TRUNCATED"}

#: inside a frame, a gap of this many bit times ends it as TRUNCATED
FRAME_TIMEOUT_BITS = 2000
#: the largest payload the gateware buffers is at least this (a sample may need more)
MIN_PAYLOAD = 256


def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8, polynomial 0x07, MSB first, initial value 0, no final XOR (the catalogue's
    CRC-8/SMBUS): for each byte, ``crc ^= byte`` then eight times
    ``crc = (crc << 1) ^ (0x07 if crc & 0x80 else 0)`` (mod 2**8)."""
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@dataclass(frozen=True)
class FrameFormat:
    """The sizes both ends agree on, all derived from the spec (:func:`frame_format`)."""

    in_bytes: int  # bytes of one input-stream word in a SEND payload
    out_bytes: int  # bytes of one output-stream word in a PEEK / RECV response
    out_data: int  # bits of an output word below its STEP/DECISION bit
    max_payload: int  # the largest request payload the gateware buffers

    @property
    def max_write_words(self) -> int:
        return (self.max_payload - 4) // 4

    @property
    def max_send_words(self) -> int:
        return self.max_payload // self.in_bytes


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def frame_format(spec) -> FrameFormat:
    in_width, out_data = io_widths(spec)
    in_bytes = _pow2(-(-in_width // 8))  # powers of two: the gateware checks sizes with a mask
    # a label and every pixel in one SEND; events: a label and a whole step (its count, every input)
    sample = in_bytes * (1 + spec.inputs + int(spec.encoding.per_step))
    return FrameFormat(in_bytes=in_bytes, out_bytes=_pow2(-(-(out_data + 1) // 8)), out_data=out_data, max_payload=_pow2(max(MIN_PAYLOAD, sample)))


def encode_request(cmd: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise BadValueError(f"payload of {len(payload)} bytes: a frame holds at most 65535")
    body = bytes([cmd, len(payload) & 0xFF, len(payload) >> 8]) + bytes(payload)
    return bytes([REQUEST_START]) + body + bytes([crc8(body)])


__all__ = [
    "BAD_COMMAND", "BAD_CRC", "BridgeError", "LinkTimeout", "load_host_init", "load_weights_if_missing", "write_params", "write_region", "BAD_LENGTH", "BUS_ADDR_BITS", "BUS_DATA_BITS", "COMMANDS", "DECISION",
    "FRAME_TIMEOUT_BITS", "ID_WORD", "INDEX_BITS", "LAYER_REGIONS", "MEM_KEYS", "MIN_PAYLOAD", "OK",
    "PEEK", "PHASES", "READ", "RECV", "REGION_BITS", "REGISTERS", "REQUEST_START", "RESPONSE_START",
    "SEND", "SPRAM_KEYS", "STATUS_NAMES", "STEP", "TRUNCATED", "WRITE", "FrameFormat", "address",
    "check_chip", "chip_problems", "crc8", "encode_request", "engine", "event_index_bits", "frame_format", "input_words", "io_widths",
    "layer_memory_map", "layer_regions", "lfsr_stream_names", "memory_map", "region_elements", "to_signed",
]
