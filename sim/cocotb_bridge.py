"""cocotb test module: the host code (``localsnn.board.Host``) talking to ``BridgeTop`` over a
simulated serial line, in Verilator.

The pytest side (``sim/bridge_sim.py``) writes a job folder and points ``LOCALSNN_JOB`` at
it: ``spec.toml``, ``params.npz`` (the chip's initial weights), ``samples.npz`` (quantized
pixels ``x``, ``labels``), ``job.json`` (memory map, UART divisor). Each test writes
``<test>.json`` there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from localsnn.golden import Golden
from localsnn.golden.params import load_params
from localsnn.sim.drivers import SerialLine, reset, start_clock
from localsnn.sim.harness import check_samples

from localsnn import spec as specmod
from localsnn.board import (
    BAD_COMMAND,
    BAD_CRC,
    BAD_LENGTH,
    FRAME_TIMEOUT_BITS,
    OK,
    READ,
    SEND,
    TRUNCATED,
    WRITE,
    BridgeError,
    Host,
    encode_request,
    load_weights_if_missing,
    run_samples,
)


def _job():
    job = Path(os.environ["LOCALSNN_JOB"])
    cfg = json.loads((job / "job.json").read_text())
    spec = specmod.load(job / "spec.toml")
    params = load_params(job / "params.npz", spec)
    with np.load(job / "samples.npz") as data:
        xs, labels = data["x"], data["labels"]
    samples = [(xs[k], None if labels[k] < 0 else int(labels[k])) for k in range(len(xs))]
    return job, cfg, spec, params, samples


async def _host(dut, cfg, spec, params):
    start_clock(dut)
    await reset(dut, quiet=())
    line = SerialLine(dut, cfg["divisor"])
    await line.idle(4)
    host = Host(line, spec, cfg["memory_map"])
    loaded = await load_weights_if_missing(host, cfg["memory_map"], params)  # as 'board run' does
    assert loaded == [e["name"] for e in cfg["memory_map"] if e.get("host_init")], loaded
    return line, host


@cocotb.test()
async def learning_run(dut):
    """Every step of the first samples compared through the bridge (LOCKSTEP, every potential
    and spike read back), then a pipelined run with learning on, decisions and STEP words
    compared with golden after every sample and every weight at the end."""
    job, cfg, spec, params, samples = _job()
    line, host = await _host(dut, cfg, spec, params)
    assert await host.read_register("ID") == 0x4C534E4E
    golden = Golden(spec, params.copy())
    k = cfg["every_step_samples"]
    rep = await check_samples(host, spec, params, cfg["memory_map"], samples[:k], learn=True, every_step=True, golden=golden)
    run = await run_samples(host, samples[k:], learn=True, golden=golden, check_weights="end")
    result = {
        "every_step": {"samples": rep.samples, "compared": rep.compared, "decisions": rep.decisions},
        "run": {"samples": run.samples, "decisions": run.decisions, "correct": run.correct, "mismatches": run.mismatches},
        "weights_changed": int(np.count_nonzero(golden.params.layers[0].w != params.layers[0].w)),  # = the chip's (compared)
        "frames": host.frames, "bytes": host.bytes, "framing_errors": line.framing_errors,
    }
    (job / "learning_run.json").write_text(json.dumps(result))
    assert not run.mismatches, run.mismatches[:5]
    assert line.framing_errors == 0


async def _refused(host: Host, frame: bytes, cmd: int) -> int:
    try:
        await host.exchange(frame, cmd)
    except BridgeError as err:
        if err.status is None:
            raise
        return err.status
    raise AssertionError(f"a bad frame {frame.hex()} was answered OK")


@cocotb.test()
async def bad_frames(dut):
    """Corrupted, truncated, oversized and unknown frames are answered with an error status and
    never applied; the bridge goes on working after each."""
    job, cfg, spec, params, samples = _job()
    line, host = await _host(dut, cfg, spec, params)
    checks = {}
    lr = host.registers["LR_SHIFT"]
    lr0 = await host.read(lr)
    lo, hi = spec.lr_shift_range()
    lr1 = lo if lr0 != lo else hi
    good = encode_request(WRITE, lr.to_bytes(4, "little") + lr1.to_bytes(4, "little"))

    # a flipped bit in the payload: BAD_CRC, register unchanged
    bad = bytearray(good)
    bad[8] ^= 0x01
    checks["flipped bit"] = (await _refused(host, bytes(bad), WRITE), BAD_CRC, await host.read(lr), lr0)
    # a wrong CRC byte
    bad = bytearray(good)
    bad[-1] ^= 0x80
    checks["wrong crc"] = (await _refused(host, bytes(bad), WRITE), BAD_CRC, await host.read(lr), lr0)
    # broken off after 6 of its 13 bytes: TRUNCATED once the line stays idle
    await line.write(good[:6])
    await line.idle(FRAME_TIMEOUT_BITS + 50)
    checks["truncated"] = (await _refused(host, b"", WRITE), TRUNCATED, await host.read(lr), lr0)
    # unknown command, wrong payload size, a length over the buffer
    checks["unknown command"] = (await _refused(host, encode_request(0x7E, b"\x00"), 0x7E), BAD_COMMAND, 0, 0)
    checks["READ of 5 bytes"] = (await _refused(host, encode_request(READ, b"\x00" * 5), READ), BAD_LENGTH, 0, 0)
    checks["WRITE of 6 bytes"] = (await _refused(host, encode_request(WRITE, lr.to_bytes(4, "little") + b"\x01\x00"), WRITE), BAD_LENGTH, await host.read(lr), lr0)
    big = host.fmt.max_payload + 4
    frame = encode_request(WRITE, lr.to_bytes(4, "little") + bytes(big - 4))
    await line.write(frame)
    await line.idle(FRAME_TIMEOUT_BITS + 50)
    checks["too long"] = (await _refused(host, b"", WRITE), BAD_LENGTH, await host.read(lr), lr0)
    # a corrupted sample: refused, nothing reaches the chip (it stays idle, no sample counted)
    x, label = samples[0]
    words = [label] + [int(v) for v in x]
    payload = bytearray(b"".join(w.to_bytes(host.fmt.in_bytes, "little") for w in words))
    frame = bytearray(encode_request(SEND, bytes(payload)))
    frame[4 + 10] ^= 0x04
    status_before = await host.read_register("STATUS")
    checks["corrupted sample"] = (await _refused(host, bytes(frame), SEND), BAD_CRC, await host.read_register("STATUS"), status_before)
    # garbage before a start byte is skipped
    await line.write(b"\x00\xff\x13\x5a")
    checks["garbage then READ"] = (OK, OK, await host.read(lr), lr0)
    # the good frame is taken, and a whole sample afterwards equals golden
    await host.exchange(good, WRITE)
    checks["good frame"] = (OK, OK, await host.read(lr), lr1)
    await host.write(lr, lr0)
    golden = Golden(spec, params.copy())
    run = await run_samples(host, samples[:2], learn=True, golden=golden, check_weights="end")
    checks["samples after the errors equal golden"] = (len(run.mismatches), 0, run.samples, 2)
    (job / "bad_frames.json").write_text(json.dumps({k: list(v) for k, v in checks.items()}))
    for name, (status, want, value, want_value) in checks.items():
        assert status == want and value == want_value, f"{name}: status {status} (want {want}), value {value} (want {want_value})"
    assert line.framing_errors == 0


@cocotb.test()
async def controls(dut):
    """The host's controls: learning off leaves the weights, the learning-rate shift, LFSR seeds,
    weights written and read back, learning per layer."""
    job, cfg, spec, params, samples = _job()
    line, host = await _host(dut, cfg, spec, params)
    out = {}
    w0 = await host.read_memory("layer0.w")
    out["initial weights"] = bool(np.array_equal(w0, params.layers[0].w))
    # learning off: a sample changes no weight, and its decision is golden's without learning
    await host.set_learning(False)
    golden = Golden(spec, params.copy())
    run = await run_samples(host, samples[:1], learn=False, golden=golden, check_weights="end")
    out["learning off: no mismatch"] = not run.mismatches
    out["learning off: weights unchanged"] = bool(np.array_equal(await host.read_memory("layer0.w"), w0))
    # learning on but no layer in the mask: no weight changes either
    await host.set_layer_learning(0)
    out["layer mask read back"] = await host.read_register("LEARN_MASK") == 0
    await host.set_learning(True)
    await host.run_sample(*samples[0])
    out["layer mask 0: weights unchanged"] = bool(np.array_equal(await host.read_memory("layer0.w"), w0))
    await host.set_layer_learning((1 << len(spec.layers)) - 1)
    # the learning-rate shift: in range taken, out of range refused by the host
    _, hi = spec.lr_shift_range()
    await host.set_lr_shift(hi)
    out["lr shift set"] = await host.read_register("LR_SHIFT") == hi
    try:
        await host.set_lr_shift(hi + 1)
        out["lr shift out of range refused"] = False
    except BridgeError as err:
        out["lr shift out of range refused"] = "out of the range" in str(err)
    await host.set_lr_shift(spec.learning.lr_shift)
    # seeds
    await host.seed("round:0", 12345)
    out["seed"] = await host.read(host.registers["LFSR_BASE"] + 1) == 12345
    # weights written, read back; a run from them equals golden from the same weights
    rng = np.random.default_rng(7)
    new = params.copy()
    fmt_max = int(np.abs(params.layers[0].clf_w).max()) + 1
    new.layers[0].clf_w = rng.integers(-fmt_max, fmt_max, size=params.layers[0].clf_w.shape)
    await host.write_memory("layer0.clf_w", new.layers[0].clf_w)
    out["weights written"] = bool(np.array_equal(await host.read_memory("layer0.clf_w"), new.layers[0].clf_w))
    golden = Golden(spec, new.copy())
    golden.set_stream_states(await host.lfsr_states())  # round:0 from the seed above, the others as they are
    run = await run_samples(host, samples[1:3], learn=True, golden=golden, check_weights="end")
    out["run from written weights equals golden"] = not run.mismatches
    (job / "controls.json").write_text(json.dumps(out))
    assert all(out.values()), out
    assert line.framing_errors == 0
