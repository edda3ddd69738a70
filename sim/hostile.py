"""Hostile input for the board bridge: what the frame engine must answer to any byte stream, and
seeded streams of malformed and hostile requests (the bridge co-simulation, ``tests/sim/bridge_tb.py``, drives them).

:func:`expect` is the frame engine of ``rtl/bridge.py`` written again as a plain Python reading
of ``docs/board.md``, for one burst of bytes followed by a long idle line: the response the
bridge must send (or none). The fuzz compares every response with it, so a stream is never
only "survived": its answer is checked.

:func:`addresses_outside` lists bus addresses that must read 0 and ignore writes: the high
bits above the bus, layer regions with no memory, regions after the last layer, and indices
past the end of every memory of the memory map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from localsnn.chip import (
    BAD_COMMAND,
    BAD_CRC,
    BAD_LENGTH,
    BUS_ADDR_BITS,
    INDEX_BITS,
    PEEK,
    READ,
    RECV,
    REQUEST_START,
    SEND,
    TRUNCATED,
    WRITE,
    FrameFormat,
    encode_request,
    region_elements,
)



@dataclass(frozen=True)
class Expected:
    """The bridge's answer to a burst: ``status`` None means no response at all (the burst
    ended outside a frame); ``frame`` is (cmd, payload) when the burst held a whole frame with
    a good CRC (then ``status`` is None when the command runs, else its refusal)."""

    status: int | None
    echo: int = 0
    frame: tuple[int, bytes] | None = None
    trailing: bool = False  # bytes came after the frame's CRC (dropped while it answers)


def size_check(fmt: FrameFormat, cmd: int, payload: bytes) -> int | None:
    """The CHECK state: the status refusing a well-formed frame, or None when it runs."""
    n = len(payload)
    if cmd == READ:
        count = int.from_bytes(payload[4:6], "little") if n == 6 else 0
        return None if n == 6 and 0 < count <= 0x3FFF else BAD_LENGTH
    if cmd == WRITE:
        return None if n >= 8 and n % 4 == 0 else BAD_LENGTH
    if cmd == SEND:
        return None if n > 0 and n % fmt.in_bytes == 0 else BAD_LENGTH
    if cmd == PEEK:
        return None if n == 0 else BAD_LENGTH
    if cmd == RECV:
        count = int.from_bytes(payload[:2], "little") if n == 2 else 0
        return None if n == 2 and 0 < count <= 0xFFFF // fmt.out_bytes else BAD_LENGTH
    return BAD_COMMAND


def expect(stream: bytes, fmt: FrameFormat) -> Expected:
    """What the bridge answers to ``stream`` sent in one burst, then an idle line."""
    start = stream.find(bytes([REQUEST_START]))
    if start < 0:
        return Expected(None)  # no start byte: everything skipped
    body = stream[start + 1:]
    if len(body) < 3:  # broken off inside the header
        return Expected(TRUNCATED, body[0] if body else 0)
    cmd, n = body[0], body[1] | body[2] << 8
    if n > fmt.max_payload:
        return Expected(BAD_LENGTH, cmd)  # drained to the end of the burst
    if len(body) < 3 + n + 1:
        return Expected(TRUNCATED, cmd)
    payload, crc = body[3:3 + n], body[3 + n]
    trailing = len(body) > 4 + n
    if encode_request(cmd, payload)[-1] != crc:
        return Expected(BAD_CRC, cmd, trailing=trailing)
    return Expected(size_check(fmt, cmd, payload), cmd, frame=(cmd, bytes(payload)), trailing=trailing)


def region_sizes(memory_map: list[dict]) -> dict[int, int]:
    """Bus region -> the elements its memory answers (:func:`localsnn.chip.region_elements`)."""
    return {e["region"]: region_elements(e) for e in memory_map if e.get("region", 0) != 0}


def is_outside(memory_map: list[dict], addr: int) -> bool:
    """True where the bus has nothing: reads give 0, writes are ignored."""
    if addr >> BUS_ADDR_BITS:
        return True
    region, index = addr >> INDEX_BITS, addr & ((1 << INDEX_BITS) - 1)
    if region == 0:
        return False  # the registers (unused indices read 0 too, but are not drawn here)
    size = region_sizes(memory_map).get(region)
    return size is None or index >= size


def addresses_outside(memory_map: list[dict], layers: int) -> list[tuple[str, int]]:
    """(what, address) pairs the bus must read as 0 and whose writes it must ignore."""
    out: list[tuple[str, int]] = []
    regions = {e["region"]: e for e in memory_map if e.get("region", 0) != 0}
    sizes = region_sizes(memory_map)
    for e in regions.values():
        base = e["region"] << INDEX_BITS
        size = sizes[e["region"]]
        for index in sorted({size, size + 3, 2 * size, (1 << INDEX_BITS) - 1}):
            if index < 1 << INDEX_BITS:
                out.append((f"{e['name']} index {index} (past its {size} elements)", base + index))
    for r in range(1, 1 + 16 * layers + 16):
        if r not in regions:
            out.append((f"region {r} (no memory)", r << INDEX_BITS))
            out.append((f"region {r} (no memory), index 1", (r << INDEX_BITS) + 1))
    out.append(("region 255", (255 << INDEX_BITS) + 3))
    # above the bus's 30 bits: each would alias onto a register or a memory
    targets = [("ID", 0), ("CTRL", 1), ("LR_SHIFT", 3)]
    for e in regions.values():
        if e.get("writable"):
            last = (e["shape"][0] - 1) * e.get("row_stride", 1) + (e["shape"][1] - 1 if len(e["shape"]) == 2 else 0)
            targets += [(f"{e['name']}[0]", e["region"] << INDEX_BITS), (f"{e['name']}[last]", (e["region"] << INDEX_BITS) + last)]
    for name, addr in targets:
        for high in (1, 2, 3):
            out.append((f"{name} with address bits 31..30 = {high:02b}", addr | high << BUS_ADDR_BITS))
    return out


class Fuzz:
    """Seeded malformed and hostile requests. Each case is ``(kind, bytes, Expected)``; kinds
    whose answer depends on the chip (``wait``: a command that waits for the chip, answered
    only after the next request aborts it; ``outside-read``: an OK READ of zeros) are marked."""

    def __init__(self, seed: int, fmt: FrameFormat, memory_map: list[dict], layers: int, sends: list[bytes] = ()) -> None:
        self.rng = np.random.default_rng(seed)
        self.sends = list(sends)  # real samples' SEND payloads: corrupted, they must never run
        self.fmt = fmt
        self.outside = addresses_outside(memory_map, layers)
        self.memory_map = memory_map
        self.registers = memory_map[0]["registers"]

    def _bytes(self, n: int, *, start: bool = True) -> bytes:
        b = self.rng.integers(0, 256, size=n, dtype=np.int64).astype(np.uint8).tobytes()
        return b if start else b.replace(bytes([REQUEST_START]), b"\x00")

    def _outside(self, most: int) -> tuple[str, int, int]:
        """An address outside every region, and a count of words from it that all are."""
        what, addr = self.outside[self.rng.integers(len(self.outside))]
        count = int(self.rng.integers(1, most + 1))
        while count > 1 and not all(is_outside(self.memory_map, (addr + j) & 0xFFFFFFFF) for j in range(count)):
            count -= 1
        return what, addr, count

    def _harmless(self) -> bytes:
        """A well-formed request that changes nothing (READ of registers, WRITE of an address
        outside every region, PEEK / RECV payloads of the wrong size), or a real sample's SEND,
        which the fuzz only ever sends broken (a bit flipped, cut off)."""
        r = self.rng.integers(5 if self.sends else 4)
        if r == 4:
            return encode_request(SEND, self.sends[self.rng.integers(len(self.sends))])
        if r == 0:
            return encode_request(READ, int(self.rng.integers(0, 9)).to_bytes(4, "little") + int(self.rng.integers(1, 8)).to_bytes(2, "little"))
        if r == 1:
            _, addr, count = self._outside(5)
            return encode_request(WRITE, addr.to_bytes(4, "little") + self._bytes(4 * count))
        if r == 2:
            return encode_request(RECV, self._bytes(int(self.rng.choice([1, 3, 4]))))
        return encode_request(PEEK, self._bytes(int(self.rng.integers(1, 5))))

    def case(self) -> tuple[str, bytes]:
        """One hostile stream, drawn until :func:`expect` says no stray frame would run."""
        while True:
            kind, data = self._draw()
            e = expect(data, self.fmt)
            if kind.startswith(("outside", "wait", "readonly")):
                return kind, data
            # a mutation must never make a frame that runs, nor leave bytes after a refused one
            # (the bridge drops them while it answers, so the answer would depend on timing)
            if (e.frame is not None and e.status is None) or e.trailing:
                continue
            return kind, data

    def _draw(self) -> tuple[str, bytes]:
        rng, fmt = self.rng, self.fmt
        k = int(rng.integers(12))
        if k == 0:
            return "noise", self._bytes(int(rng.integers(1, 40)), start=False)
        if k == 1:
            return "start-byte flood", bytes([REQUEST_START]) * int(rng.integers(1, 12)) + self._harmless()
        if k == 2:
            frame = bytearray(self._harmless())
            pos = int(rng.integers(len(frame)))
            frame[pos] ^= 1 << int(rng.integers(8))
            return f"bit flip at byte {pos}", bytes(frame)
        if k == 3:
            frame = self._harmless()
            cut = int(rng.integers(1, len(frame)))
            return f"truncated at {cut} of {len(frame)}", frame[:cut]
        if k == 4:
            cmd = int(rng.choice([READ, WRITE, SEND, PEEK, RECV]))
            sizes = {READ: [0, 2, 4, 5, 7, 8], WRITE: [0, 1, 4, 5, 6, 7, 9, 10], SEND: [0], PEEK: [1, 2, 4], RECV: [0, 1, 3, 4]}[cmd]
            if fmt.in_bytes > 1:
                sizes[SEND] = [0, 1, fmt.in_bytes + 1]
            return "wrong length", encode_request(cmd, self._bytes(int(rng.choice(sizes))))
        if k == 5:  # counts out of range
            cmd = int(rng.choice([READ, RECV]))
            if cmd == READ:
                count = int(rng.choice([0, 0x4000, 0xFFFF]))
                return "READ count out of range", encode_request(READ, bytes(4) + count.to_bytes(2, "little"))
            count = int(rng.choice([0, 0xFFFF // fmt.out_bytes + 1, 0xFFFF]))
            if count > 0xFFFF:
                count = 0
            return "RECV count out of range", encode_request(RECV, count.to_bytes(2, "little"))
        if k == 6:
            n = int(rng.integers(fmt.max_payload + 1, 0x10000))
            head = bytes([REQUEST_START, int(rng.integers(1, 6)), n & 0xFF, n >> 8])
            return "length over the buffer", head + self._bytes(int(rng.integers(0, 64)))
        if k == 7:
            cmd = int(rng.choice([0x00, 0x06, 0x7E, 0xA5, 0x5A, 0xFF]))
            return "unknown command", encode_request(cmd, self._bytes(int(rng.integers(0, 10))))
        if k == 8:
            what, addr, count = self._outside(3)
            return f"outside-read {what}", encode_request(READ, addr.to_bytes(4, "little") + count.to_bytes(2, "little"))
        if k == 9:
            what, addr, count = self._outside(3)
            return f"outside-write {what}", encode_request(WRITE, addr.to_bytes(4, "little") + self._bytes(4 * count))
        if k == 10:
            name = str(rng.choice(["ID", "STATUS", "STEP_CYCLES", "SAMPLE_CYCLES", "DECISION", "STEP", "PHASE_BASE"]))
            return f"readonly {name}", encode_request(WRITE, self.registers[name]["index"].to_bytes(4, "little") + self._bytes(4))
        if rng.integers(2):
            return "wait PEEK with nothing pending", encode_request(PEEK)
        return "wait RECV with nothing pending", encode_request(RECV, int(rng.integers(1, 4)).to_bytes(2, "little"))


__all__ = ["Expected", "Fuzz", "addresses_outside", "expect", "is_outside", "region_sizes", "size_check"]
