"""The host side of the board bridge without a board or a simulator: frames, CRC, and how
the host reacts to bad responses."""

from __future__ import annotations

import asyncio

import pytest

from localsnn import spec as S
from localsnn.board import BridgeError, Host, LinkTimeout
from localsnn.chip import BAD_CRC, OK, READ, RESPONSE_START, crc8, encode_request, frame_format, io_widths


def test_crc8_is_the_standard_crc8_0x07():
    assert crc8(b"123456789") == 0xF4  # the catalogued check value of CRC-8 (poly 0x07, init 0)
    frame = encode_request(READ, b"\x01\x02\x03\x04\x01\x00")
    assert frame[0] == 0xA5 and frame[1] == READ and frame[2:4] == b"\x06\x00"
    assert crc8(frame[1:]) == 0  # a message followed by its CRC leaves a zero remainder


def test_frame_format_follows_the_spec():
    spec = S.load("digits")
    fmt = frame_format(spec)
    in_width, out_data = io_widths(spec)
    assert fmt.in_bytes * 8 >= in_width and fmt.out_bytes * 8 >= out_data + 1
    assert fmt.max_payload >= fmt.in_bytes * (1 + spec.inputs)
    mnist = frame_format(S.load("mnist"))
    assert mnist.max_payload >= mnist.in_bytes * 785 and mnist.max_payload & (mnist.max_payload - 1) == 0


class ScriptedLink:
    """Answers every request with the next prepared response."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.pending = b""
        self.written = []

    async def write(self, data):
        self.written.append(bytes(data))
        self.pending += self.responses.pop(0)

    async def read(self, n):
        if len(self.pending) < n:
            raise LinkTimeout(f"only {len(self.pending)} of {n} bytes")
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def response(status, cmd, payload=b"", corrupt=False):
    body = bytes([status, cmd, len(payload) & 0xFF, len(payload) >> 8]) + payload
    crc = crc8(body) ^ (0x10 if corrupt else 0)
    return bytes([RESPONSE_START]) + body + bytes([crc])


def _host(responses):
    spec = S.load("digits")
    mm = [{"name": "registers", "region": 0, "registers": {"ID": {"index": 0}, "LR_SHIFT": {"index": 3}, "CTRL": {"index": 1}, "LFSR_BASE": {"index": 16}}}]
    return Host(ScriptedLink(responses), spec, mm)


def test_host_reads_a_good_response():
    host = _host([response(OK, READ, (0x4C534E4E).to_bytes(4, "little"))])
    assert asyncio.run(host.read(0)) == 0x4C534E4E
    assert host.link.written[0] == encode_request(READ, b"\x00\x00\x00\x00\x01\x00")


@pytest.mark.parametrize("bad, message", [
    (response(OK, READ, b"\x01\x02\x03\x04", corrupt=True), "response CRC"),
    (b"\x00" + response(OK, READ, b"\x01\x02\x03\x04")[1:], "response starts with"),
    (response(BAD_CRC, READ), "answered BAD_CRC"),
    (response(OK, 0x02, b"\x01\x02\x03\x04"), "response to command 0x02"),
    (response(OK, READ, b"\x01\x02")[:5], "only 5 of 6 bytes"),
])
def test_host_rejects_bad_responses(bad, message):
    host = _host([bad])
    with pytest.raises(BridgeError, match=message):
        asyncio.run(host.read(0))


def test_host_checks_its_arguments_before_sending():
    host = _host([])
    lo, hi = host.spec.lr_shift_range()
    with pytest.raises(BridgeError, match=f"out of the range {lo}..{hi}"):
        asyncio.run(host.set_lr_shift(hi + 1))
    with pytest.raises(BridgeError, match="unknown LFSR stream 'round:9'"):
        asyncio.run(host.seed("round:9", 5))
    with pytest.raises(BridgeError, match="0 would stop it"):
        asyncio.run(host.seed("round:0", 0))
    assert host.link.written == []


def _pty_device(answer):
    """A pseudo-terminal whose far end reads one request and writes ``answer(request)``."""
    import os
    import threading

    master, slave = os.openpty()
    name = os.ttyname(slave)

    def device():
        got = b""
        while len(got) < 4 or len(got) < 5 + (got[2] | got[3] << 8):
            got += os.read(master, 256)
        os.write(master, answer(got))

    t = threading.Thread(target=device, daemon=True)
    t.start()
    return name, t, (master, slave)


def test_serial_link_round_trip_on_a_pty():
    from localsnn.board import SerialLink

    name, t, _fds = _pty_device(lambda req: response(OK, READ, (0x4C534E4E).to_bytes(4, "little")))
    link = SerialLink(name, 115200, timeout_s=5)
    host = _host([])
    host.link = link
    try:
        assert asyncio.run(host.read(0)) == 0x4C534E4E
    finally:
        link.close()
    t.join(5)


def test_board_run_refuses_a_device_that_is_not_the_chip(capsys):
    from localsnn.cli import main

    name, t, _fds = _pty_device(lambda req: response(OK, READ, (0x12345678).to_bytes(4, "little")))
    assert main(["board", "run", "--port", name, "--config", "digits", "--samples", "2"]) == 2
    assert "ID register reads 0x12345678, not 0x4c534e4e" in capsys.readouterr().err
    t.join(5)


def test_board_run_says_what_is_wrong_with_its_arguments(capsys):
    from localsnn.cli import main

    assert main(["board", "run", "--port", "/nonexistent/tty", "--config", "digits"]) == 2
    assert "cannot open serial port '/nonexistent/tty'" in capsys.readouterr().err
    assert main(["board", "run", "--port", "/nonexistent/tty", "--config", "digits", "--samples", "0"]) == 2
    assert "argument --samples: 0 is less than 1; allowed: 1 or more" in capsys.readouterr().err
