"""The host side of the board bridge: frames, a serial link, and the chip's controls.

The board's gateware (``localsnn.rtl.bridge``) turns frames on a serial line (8N1 UART) into
the chip's stream words and register-bus accesses. This module is the other end; it needs
no Amaranth, only ``pyserial`` for a real port (``pip install localsnn[board]``). What both
ends agree on (frames, commands, status codes, CRC, registers, memory map) is defined once, in
:mod:`localsnn.chip`; the names are re-exported here.

Frames (every number little-endian)::

    request   A5  CMD  LEN_lo LEN_hi  PAYLOAD[LEN]  CRC
    response  5A  STATUS  CMD  LEN_lo LEN_hi  PAYLOAD[LEN]  CRC

``CRC`` is CRC-8 (polynomial x^8 + x^2 + x + 1 = 0x07, initial value 0, no reflection) over
every byte after the start byte. Commands:

========  ====  ==========================================  ==================================
command   CMD   request payload                             response payload
========  ====  ==========================================  ==================================
READ      0x01  address (4 bytes), count (2 bytes)          ``count`` 32-bit words read from
                                                            address, address + 1, ...
WRITE     0x02  address (4 bytes), then 32-bit words        nothing; sent after the writes
SEND      0x03  input-stream words, ``in_bytes`` each       nothing; sent once all are taken
PEEK      0x04  nothing                                     the pending output word
                                                            (``out_bytes``), left pending
RECV      0x05  count (2 bytes)                             ``count`` output words, taken
========  ====  ==========================================  ==================================

The gateware checks a whole request (start byte, length, CRC, command, payload size) before it
does anything: a corrupted frame is answered with a status other than OK and never applied. A
frame broken off (no byte for :data:`FRAME_TIMEOUT_BITS` bit times inside a frame) is dropped
and answered with TRUNCATED. Bytes before a start byte are skipped. The host sends one request
at a time and waits for its response; a response with a wrong CRC or start byte raises
:class:`BridgeError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the chip's contract (frames, registers, memory map, the link's errors) is localsnn.chip
from localsnn.chip import (
    COMMANDS,
    DECISION,
    ID_WORD,
    INDEX_BITS,
    input_words,
    OK,
    PEEK,
    READ,
    RECV,
    RESPONSE_START,
    SEND,
    STATUS_NAMES,
    STEP,
    WRITE,
    BridgeError,
    FrameFormat,
    LinkTimeout,
    crc8,
    encode_request,
    frame_format,
    lfsr_stream_names,
    load_host_init,
    load_weights_if_missing,
    to_signed,
    write_params,
    write_region,
)
from localsnn.chip import memory_map as chip_memory_map
from localsnn.errors import BadValueError, LocalsnnError


# -- links: how bytes reach the board -------------------------------------------------------


class SerialLink:
    """A serial port through pyserial (the board's USB-UART), 8N1."""

    def __init__(self, port: str, baud: int = 115200, timeout_s: float = 5.0):
        try:
            import serial
        except ImportError:
            raise LocalsnnError("talking to a board needs pyserial: pip install 'localsnn[board]' (or pip install pyserial)") from None
        try:
            self.port = serial.Serial(port, baud, timeout=timeout_s)
        except (OSError, ValueError, serial.SerialException) as err:
            raise LocalsnnError(f"cannot open serial port {port!r} at {baud} baud: {err}") from None
        self.timeout_s = timeout_s

    async def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    async def read(self, n: int) -> bytes:
        data = self.port.read(n)
        if len(data) < n:
            raise LinkTimeout(f"board sent {len(data)} of {n} expected bytes within {self.timeout_s} s ({data.hex()})")
        return data

    def close(self) -> None:
        self.port.close()


# -- the host --------------------------------------------------------------------------------


class Host:
    """The chip behind a bridge. ``link`` has ``async write(bytes)`` and ``async read(n)``.

    It has the co-simulation harness's ``Chip`` interface (``send``, ``peek``, ``accept``,
    ``read``, ``write``, plus ``read_many``), so :func:`localsnn.sim.harness.check_samples`
    runs through it unchanged; and the controls a user wants (:meth:`run_sample`,
    :meth:`set_learning`, :meth:`set_lr_shift`, :meth:`seed`, :meth:`read_weights`, ...).
    """

    def __init__(self, link, spec, memory_map: list[dict]):
        self.link = link
        self.spec = spec
        self.fmt = frame_format(spec)
        self.memory_map = memory_map
        self.registers = {k: v["index"] for k, v in memory_map[0]["registers"].items()}
        self.regions = {e["name"]: e for e in memory_map if "shape" in e}
        self.frames = 0  # requests answered OK
        self.bytes = 0  # bytes sent and received

    # ---- frames ----
    async def request(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one request, return the payload of its OK response (else raise BridgeError)."""
        return await self.exchange(encode_request(cmd, payload), cmd)

    async def exchange(self, frame: bytes, cmd: int) -> bytes:
        """Send ``frame`` as it is (a test may corrupt it) and read the response to ``cmd``."""
        await self.link.write(frame)
        head = await self.link.read(6)
        if head[0] != RESPONSE_START:
            raise BridgeError(f"{COMMANDS.get(cmd, cmd)}: response starts with {head[0]:#04x}, not {RESPONSE_START:#04x} (bytes {head.hex()})")
        status, echo, n = head[1], head[2], head[3] | head[4] << 8
        rest = await self.link.read(n) if n else b""
        body = head[1:] + rest  # STATUS CMD LEN_lo LEN_hi PAYLOAD[n] CRC
        payload_bytes = body[4:4 + n]
        crc = body[4 + n]
        if crc8(body[:4 + n]) != crc:
            raise BridgeError(f"{COMMANDS.get(cmd, cmd)}: response CRC {crc:#04x}, computed {crc8(body[:4 + n]):#04x}: corrupted on the line")
        self.bytes += len(frame) + 6 + n
        if status != OK:
            raise BridgeError(f"{COMMANDS.get(cmd, cmd)}: the bridge answered {STATUS_NAMES.get(status, status)} (command {echo:#04x}); nothing was applied", status)
        if echo != cmd:
            raise BridgeError(f"response to command {echo:#04x}, expected {cmd:#04x}")
        self.frames += 1
        return payload_bytes

    # ---- the harness's Chip interface ----
    async def read(self, addr: int) -> int:
        return (await self.read_many(addr, 1))[0]

    async def read_many(self, addr: int, count: int) -> list[int]:
        out = []
        chunk = 0x3FFF  # 4 * count must fit the 16-bit length
        while count > 0:
            k = min(count, chunk)
            data = await self.request(READ, addr.to_bytes(4, "little") + k.to_bytes(2, "little"))
            out += [int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(k)]
            addr, count = addr + k, count - k
        return out

    async def write(self, addr: int, value: int) -> None:
        await self.write_many(addr, [value])

    async def write_many(self, addr: int, values) -> None:
        values = [int(v) & 0xFFFFFFFF for v in values]
        step = self.fmt.max_write_words
        for k in range(0, len(values), step):
            words = values[k:k + step]
            await self.request(WRITE, (addr + k).to_bytes(4, "little") + b"".join(v.to_bytes(4, "little") for v in words))

    async def send(self, words) -> None:
        words = [int(w) for w in words]
        step = self.fmt.max_send_words
        for k in range(0, len(words), step):
            await self.request(SEND, b"".join(w.to_bytes(self.fmt.in_bytes, "little") for w in words[k:k + step]))

    async def peek(self) -> int:
        return int.from_bytes(await self.request(PEEK), "little")

    async def accept(self) -> None:
        await self.recv(1)

    async def recv(self, count: int) -> list[int]:
        b = self.fmt.out_bytes
        data = await self.request(RECV, count.to_bytes(2, "little"))
        return [int.from_bytes(data[b * i:b * i + b], "little") for i in range(count)]

    # ---- controls ----
    def _reg(self, name: str) -> int:
        return self.registers[name]

    async def read_register(self, name: str) -> int:
        return await self.read(self._reg(name))

    async def set_learning(self, on: bool, *, lockstep: bool = False) -> None:
        """Learning on or off (taken at the start of the next sample); LOCKSTEP as in docs/rtl.md."""
        await self.write(self._reg("CTRL"), int(on) | 2 * int(lockstep))

    async def set_layer_learning(self, mask: int) -> None:
        await self.write(self._reg("LEARN_MASK"), mask)

    async def set_lr_shift(self, shift: int) -> None:
        """Learning rate 2**-shift; raises BridgeError when the chip did not take it (out of range)."""
        lo, hi = self.spec.lr_shift_range()
        if not lo <= shift <= hi:
            raise BridgeError(f"lr_shift {shift} is out of the range {lo}..{hi} this chip allows")
        await self.write(self._reg("LR_SHIFT"), shift)

    async def seed(self, stream: str, value: int) -> None:
        """Seed one LFSR stream (``encode``, ``round:0``, ``round:0.clf``, ...)."""
        names = lfsr_stream_names(self.spec)
        if stream not in names:
            raise BridgeError(f"unknown LFSR stream {stream!r}; this chip has {', '.join(names)}")
        if not 0 < value < 1 << self.spec.lfsr.width:
            raise BridgeError(f"seed {value} for {stream!r}: allowed 1..{(1 << self.spec.lfsr.width) - 1} (an LFSR of {self.spec.lfsr.width} bits; 0 would stop it)")
        await self.write(self._reg("LFSR_BASE") + names.index(stream), value)

    async def lfsr_states(self) -> dict[str, int]:
        """The state of every LFSR stream the chip has (``Golden.set_stream_states`` takes this
        dict); a stream it does not build (a layer without learning) reads 0 and is left out."""
        base = self._reg("LFSR_BASE")
        names = lfsr_stream_names(self.spec)
        return {n: v for n, v in zip(names, await self.read_many(base, len(names))) if v}

    def _region(self, name: str) -> dict:
        if name not in self.regions:
            raise BridgeError(f"no memory {name!r} on this chip; it has {', '.join(sorted(self.regions))}")
        return self.regions[name]

    async def read_memory(self, name: str) -> np.ndarray:
        """A whole memory (``layer0.w``, ``layer0.clf_w``, ``layer0.u``, ...) as signed integers."""
        e = self._region(name)
        base = e["region"] << INDEX_BITS
        if len(e["shape"]) == 1:
            return np.array([to_signed(v) for v in await self.read_many(base, e["shape"][0])], dtype=np.int64)
        rows, cols = e["shape"]
        stride = e["row_stride"]
        flat = np.array([to_signed(v) for v in await self.read_many(base, rows * stride)], dtype=np.int64)
        return flat.reshape(rows, stride)[:, :cols]

    async def write_memory(self, name: str, values: np.ndarray) -> None:
        await write_region(self, self._region(name), values)

    async def read_params(self):
        """Every weight the chip holds (weights, classifier weights, biases, feedback) as golden
        :class:`~localsnn.golden.params.Params`."""
        from localsnn.golden.params import LayerParams, Params

        layers = []
        for i in range(len(self.spec.layers)):
            arrays = {}
            for key in ("w", "clf_w", "bias", "feedback"):
                if f"layer{i}.{key}" in self.regions:
                    arrays[key] = await self.read_memory(f"layer{i}.{key}")
            layers.append(LayerParams(**arrays))
        return Params(layers)

    async def write_params(self, params) -> None:
        """Load weights into the chip (every array of ``params`` that the chip stores)."""
        await write_params(self, self.memory_map, params)

    async def run_sample(self, x, label: int | None) -> tuple[int, list[int]]:
        """Send one sample (quantized pixels or per-step event values, label or None); return
        (decision, the STEP words' spike bits of every step). An ``events`` sample goes step by
        step (:func:`localsnn.chip.input_words`): step t's words, then the STEP word of step t."""
        T = self.spec.timesteps
        chunks = input_words(self.spec, x, label)
        words = []
        for chunk in chunks[:-1]:
            await self.send(chunk)
            words += await self.recv(1)
        await self.send(chunks[-1])
        words += await self.recv(T + 1 - len(words))
        mask = (1 << self.fmt.out_data) - 1
        kinds = [w >> self.fmt.out_data for w in words]
        if kinds != [STEP] * T + [DECISION]:
            raise BridgeError(f"expected {T} STEP words and a DECISION word, got {[hex(w) for w in words]}")
        return words[-1] & mask, [w & mask for w in words[:-1]]


# -- a whole run, compared with the golden model ------------------------------------------------


@dataclass
class RunReport:
    samples: int = 0
    correct: int = 0
    labelled: int = 0
    decisions: list | None = None
    mismatches: list | None = None  # (sample, what, chip value, golden value)
    seconds: float = 0.0


async def run_samples(host: Host, samples, *, learn: bool = True, golden=None, check_weights: str = "end", log=None) -> RunReport:
    """Stream ``samples`` ((quantized pixels, label or None) pairs) through the chip.

    With ``golden`` (a :class:`localsnn.golden.Golden` from the chip's initial parameters), the
    same samples run through it too and every STEP word and decision is compared, and the
    weights after the run (``check_weights="end"``), after every sample (``"sample"``) or not
    at all (``"never"``). Differences are listed in the report, never hidden.
    """
    if check_weights not in ("end", "sample", "never"):
        raise BadValueError(f"check_weights must be 'end', 'sample' or 'never', not {check_weights!r}")
    t0 = time.perf_counter()
    rep = RunReport(decisions=[], mismatches=[])
    await host.set_learning(learn)
    nl = len(host.spec.layers)

    async def compare_weights(n):
        for i in range(nl):
            lp = golden.params.layers[i]
            for name, gold in ((f"layer{i}.w", lp.w), (f"layer{i}.clf_w", lp.clf_w), (f"layer{i}.bias", lp.bias)):
                if gold is None:
                    continue
                chip = await host.read_memory(name)
                if not np.array_equal(chip, gold):
                    idx = tuple(int(k) for k in np.argwhere(chip != gold)[0])
                    rep.mismatches.append((n, f"{name}{list(idx)}", int(chip[idx]), int(gold[idx])))

    for n, (x, label) in enumerate(samples):
        decision, steps = await host.run_sample(x, label)
        rep.decisions.append(decision)
        rep.samples += 1
        if label is not None:
            rep.labelled += 1
            rep.correct += int(decision == label)
        if golden is not None:
            rec = golden.run_sample(np.asarray(x), label, learn=learn)
            if decision != rec.decision:
                rep.mismatches.append((n, "decision", decision, int(rec.decision)))
            last = rec.layers[-1]
            if last.clf_spikes is not None:
                for t in range(host.spec.timesteps):
                    gold_bits = sum(int(b) << k for k, b in enumerate(last.clf_spikes[t]))
                    if steps[t] != gold_bits:
                        rep.mismatches.append((n, f"step {t} output spikes", steps[t], gold_bits))
            if check_weights == "sample":
                await compare_weights(n)
        if log is not None:
            log(n, rep)
    if golden is not None and check_weights == "end" and rep.samples:
        await compare_weights(rep.samples - 1)
    rep.seconds = time.perf_counter() - t0
    return rep


# -- localsnn board run ---------------------------------------------------------------------------


def board_run(args, open_link=None) -> int:
    """``localsnn board run``: stream a dataset's samples through the chip on a board (or any
    link ``open_link(args)`` returns), learning on or off; print accuracy and throughput; with
    ``--check`` run golden beside it from the weights and LFSR states read back from the chip
    and report every difference."""
    import asyncio

    from tqdm import tqdm

    from localsnn import data
    from localsnn import spec as specmod
    from localsnn.golden import Golden
    from localsnn.golden.params import init_params, load_params, save_params

    spec = specmod.load(args.config)
    train = args.split == "train"
    d = data.load_inputs(spec, args.dataset, getattr(args, "data_dir", None), train=train, train_limit=args.samples, test_limit=0 if train else args.samples)
    xs, ys = (d.x_train, d.y_train) if train else (d.x_test, d.y_test)
    samples = [(xs[k], int(ys[k])) for k in range(len(xs))]
    # every argument is checked before the port is opened
    params = load_params(args.weights, spec) if args.weights else None
    seeds = []
    for item in args.seed or []:
        name, _, value = item.partition("=")
        try:
            seeds.append((name, int(value, 0)))
        except ValueError:
            raise LocalsnnError(f"--seed {item!r}: write STREAM=VALUE, e.g. round:0=12345") from None
    lo, hi = spec.lr_shift_range()
    if args.lr_shift is not None and not lo <= args.lr_shift <= hi:
        raise LocalsnnError(f"--lr-shift {args.lr_shift}: this spec's chip allows {lo} to {hi}")
    if getattr(args, "save_weights", None):
        from localsnn.util import output_folder

        output_folder(Path(args.save_weights).parent, overwrite=True)
    mm = chip_memory_map(spec, args.lanes)
    link = open_link(args) if open_link is not None else SerialLink(args.port, args.baud)

    async def main() -> int:
        host = Host(link, spec, mm)
        ident = await host.read_register("ID")
        if ident != ID_WORD:
            raise BridgeError(f"the board answered, but its ID register reads {ident:#x}, not {ID_WORD:#x} ('LSNN'): is the localsnn bitstream loaded?")
        if params is not None:
            await host.write_params(params)
        else:
            names = await load_weights_if_missing(host, chip_memory_map(spec, args.lanes, spram=True), init_params(spec))
            if names:
                print(f"the bitstream keeps the weights in SPRAM, which starts empty: wrote the spec's initial weights into {', '.join(names)}")
        if args.lr_shift is not None:
            await host.set_lr_shift(args.lr_shift)
        for name, value in seeds:
            await host.seed(name, value)
        golden = None
        if args.check:
            golden = Golden(spec, await host.read_params())
            golden.set_stream_states(await host.lfsr_states())
        bar = tqdm(total=n, unit="sample", disable=None)
        rep = await run_samples(host, samples, learn=args.learn, golden=golden, check_weights="end", log=lambda k, r: bar.update(1))
        bar.close()
        print(f"{spec.name} on the board: {rep.samples} {d.name} {args.split} samples, learning {'on' if args.learn else 'off'}: "
              f"accuracy {100 * rep.correct / max(rep.labelled, 1):.1f} % ({rep.correct}/{rep.labelled}), {rep.samples / rep.seconds:.1f} samples/s "
              f"({host.frames} frames, {host.bytes} bytes on the line)")
        if golden is not None:
            if rep.mismatches:
                print(f"MISMATCH with golden: {len(rep.mismatches)} differences; the first: " + "; ".join(f"sample {k}: {what}: chip {a}, golden {b}" for k, what, a, b in rep.mismatches[:5]))
            else:
                print("equal to golden: every STEP word and decision, and every weight at the end")
        if args.save_weights:
            save_params(await host.read_params(), args.save_weights, spec)
            print(f"weights read back from the chip into {args.save_weights}")
        return 1 if rep.mismatches else 0

    try:
        return asyncio.run(main())
    finally:
        close = getattr(link, "close", None)
        if close is not None:
            close()


__all__ = [
    "BridgeError",
    "FrameFormat",
    "Host",
    "LinkTimeout",
    "RunReport",
    "SerialLink",
    "board_run",
    "crc8",
    "encode_request",
    "frame_format",
    "load_host_init",
    "load_weights_if_missing",
    "run_samples",
    "write_params",
    "write_region",
]
