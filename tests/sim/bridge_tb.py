"""cocotb test module: the host code (``localsnn.board.Host``) talking to ``BridgeTop`` over a
simulated serial line, in Verilator.

The pytest side (``tests/sim/bridge_cosim.py``) writes a job folder and points ``LOCALSNN_JOB`` at
it: ``spec.toml``, ``params.npz`` (the chip's initial weights: the build's, or written by the
host after reset where ``job.json`` says ``write_params``), ``samples.npz`` (quantized pixels
``x``, ``labels``), ``job.json`` (memory map, write_params, UART divisor). Each test writes
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
from localsnn.sim.hostile import Fuzz, addresses_outside, expect

from localsnn import spec as specmod
from localsnn.board import BridgeError, Host, LinkTimeout, RunReport, load_weights_if_missing, run_samples, write_params
from localsnn.chip import (
    BAD_LENGTH,
    FRAME_TIMEOUT_BITS,
    ID_WORD,
    INDEX_BITS,
    OK,
    READ,
    RESPONSE_START,
    SEND,
    TRUNCATED,
    WRITE,
    crc8,
    encode_request,
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
    if cfg["write_params"]:  # parameters other than the build's (the spec's initial ones)
        await write_params(host, cfg["memory_map"], params, only=lambda entry: entry["name"] not in loaded)
    return line, host


@cocotb.test()
async def learning_run(dut):
    """Every step of the first samples compared through the bridge (LOCKSTEP, every potential
    and spike read back), then a pipelined run with learning on, decisions and STEP words
    compared with golden after every sample and every weight at the end."""
    job, cfg, spec, params, samples = _job()
    line, host = await _host(dut, cfg, spec, params)
    assert await host.read_register("ID") == ID_WORD
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


# -- hostile input: the faults of a careless or broken host, and a seeded fuzz -------------------

#: a request must be answered within this many bit times of its last byte (the chip idle)
ANSWER_BITS = 300


async def _answer(line: SerialLine, bits: int = ANSWER_BITS):
    """The next response as (status, echoed command, payload), or None when none starts within
    ``bits`` bit times (or one stops for that long); its start byte and CRC are asserted."""
    old, line.timeout_bits = line.timeout_bits, bits
    try:
        head = await line.read(5)
        n = head[3] | head[4] << 8
        rest = await line.read(n + 1)
    except LinkTimeout:
        return None
    finally:
        line.timeout_bits = old
    assert head[0] == RESPONSE_START, f"a response starting {head.hex()}"
    assert crc8(head[1:] + rest[:-1]) == rest[-1], f"a response with a wrong CRC: {(head + rest).hex()}"
    return head[1], head[2], bytes(rest[:-1])


async def _health(line: SerialLine, host: Host, samples: int) -> str | None:
    """A READ of the first registers, answered at once: ID right, the chip idle, ``samples``
    samples completed. Returns what is wrong, or None."""
    await line.write(encode_request(READ, (0).to_bytes(4, "little") + (5).to_bytes(2, "little")))
    got = await _answer(line)
    if got is None:
        return "no answer to a READ of the registers"
    status, echo, payload = got
    if (status, echo, len(payload)) != (OK, READ, 20):
        return f"READ of the registers answered {got}"
    words = [int.from_bytes(payload[4 * j:4 * j + 4], "little") for j in range(5)]
    st = words[host.registers["STATUS"]]
    if words[0] != ID_WORD or st & 1 or st >> 8 != samples:
        return f"registers {[hex(w) for w in words]} (want ID {ID_WORD:#x}, idle, {samples} samples)"
    return None


async def _snapshot(host: Host, memory_map: list[dict]) -> dict:
    """Every memory and every register of region 0 the map lists, as the host reads them."""
    out = {e["name"]: (await host.read_memory(e["name"])).tolist() for e in memory_map if "shape" in e}
    for name, r in memory_map[0]["registers"].items():
        if not name.endswith("_BASE"):
            out[name] = await host.read(r["index"])
    out["LFSR states"] = await host.lfsr_states()
    return out


async def _padding_writes(host: Host, memory_map: list[dict], rng) -> int:
    """Random values into the padding lanes of every 2-D memory (columns from its width to its
    row stride, present where the lanes do not divide the width): storage the datapath masks.
    Returns how many were written."""
    n = 0
    for e in memory_map:
        if e.get("writable") and len(e.get("shape", ())) == 2 and e["row_stride"] > e["shape"][1]:
            rows, cols = e["shape"]
            for r in range(rows):
                for c in range(cols, e["row_stride"]):
                    await host.write((e["region"] << INDEX_BITS) + r * e["row_stride"] + c, int(rng.integers(1, 1 << 16)))
                    n += 1
    return n


@cocotb.test()
async def faults(dut):
    """The faults a hostile host found, each by its byte string: a SEND of no words, layer
    regions without a memory, addresses above the bus's 30 bits, indices past the end of every
    memory, a frame broken off before its command byte. Each is answered at once and changes
    nothing; padding lanes written; then samples with learning on equal golden."""
    job, cfg, spec, params, samples = _job()
    line, host = await _host(dut, cfg, spec, params)
    mm = cfg["memory_map"]
    checks: dict[str, list] = {}

    def check(name, ok, detail=""):
        checks[name] = [bool(ok), str(detail)]

    before = await _snapshot(host, mm)
    # 1. SEND with LEN 0: refused (BAD_LENGTH), nothing runs
    frame = bytes.fromhex("a5030000bd")
    assert frame == encode_request(SEND, b"")
    await line.write(frame)
    got = await _answer(line)
    check("SEND of no words: BAD_LENGTH", got == (BAD_LENGTH, SEND, b""), got)
    check("SEND of no words: then healthy", (h := await _health(line, host, 0)) is None, h)
    # 2-4. every address outside the regions: a WRITE answered OK and ignored, a READ gives 0
    bad = []
    for what, addr in addresses_outside(mm, len(spec.layers)):
        await line.write(encode_request(WRITE, addr.to_bytes(4, "little") + (0x5A5A5A5A ^ addr).to_bytes(4, "little")))
        w = await _answer(line)
        await line.write(encode_request(READ, addr.to_bytes(4, "little") + (1).to_bytes(2, "little")))
        r = await _answer(line)
        if w != (OK, WRITE, b"") or r != (OK, READ, bytes(4)):
            bad.append((what, hex(addr), w, r))
    check("addresses outside: WRITE ignored, READ 0, answered at once", not bad, bad[:4])
    check("addresses outside: then healthy", (h := await _health(line, host, 0)) is None, h)
    # a frame broken off after its start byte: TRUNCATED, echoing command 0 (none was received)
    await line.write(b"\xa5")
    await line.idle(FRAME_TIMEOUT_BITS + 50)
    got = await _answer(line)
    check("start byte alone: TRUNCATED echoing 0", got == (TRUNCATED, 0, b""), got)
    check("start byte alone: then healthy", (h := await _health(line, host, 0)) is None, h)
    after = await _snapshot(host, mm)
    changed = [k for k in before if before[k] != after[k]]
    check("no register or memory changed", not changed, changed)
    # padding lanes hold whatever is written and change no result
    rng = np.random.default_rng(11)
    check("padding lanes written", True, await _padding_writes(host, mm, rng))
    golden = Golden(spec, params.copy())
    try:
        run = await run_samples(host, samples[:2], learn=True, golden=golden, check_weights="end")
        check("samples with learning on equal golden", not run.mismatches and run.samples == 2, run.mismatches[:3])
    except BridgeError as err:  # LinkTimeout too: the chip no longer answers
        check("samples with learning on equal golden", False, err)
    (job / "faults.json").write_text(json.dumps(checks))
    assert all(v[0] for v in checks.values()), "\n".join(f"{k}: {v[1][:300]}" for k, v in checks.items() if not v[0])


@cocotb.test()
async def fuzz(dut):
    """A seeded stream of malformed and hostile requests (``sim/hostile.py``), each answered as
    ``hostile.expect`` says and followed by a health check; every so often a real sample is
    sent and a second SEND arrives while the chip is busy with it. Every weight is compared
    with golden along the way and at the end, then samples with learning on equal golden."""
    job, cfg, spec, params, samples = _job()
    line, host = await _host(dut, cfg, spec, params)
    mm = cfg["memory_map"]
    sends = [b"".join(int(w).to_bytes(host.fmt.in_bytes, "little") for w in [label] + list(x)) for x, label in samples]
    fz = Fuzz(cfg["fuzz_seed"], host.fmt, mm, len(spec.layers), sends)
    golden = Golden(spec, params.copy())
    T = spec.timesteps
    done = 0
    kinds: dict[str, int] = {}
    failures: list = []
    weight_checks = 0

    async def weights_equal_golden(where):
        nonlocal weight_checks
        chip = await host.read_params()
        for i, (a, b) in enumerate(zip(chip.layers, golden.params.layers)):
            for key, arr in b.arrays().items():
                if key in a.arrays() and not np.array_equal(a.arrays()[key], arr):
                    failures.append((where, f"layer{i}.{key} differs from golden"))
        weight_checks += 1

    for n in range(cfg["fuzz_cases"]):
        if n % 40 == 20:  # a real sample, and a SEND while the chip is busy with it
            x, label = samples[(n // 40) % len(samples)]
            words = [label] + [int(v) for v in x]
            await host.send(words)
            await line.write(encode_request(SEND, b"".join(w.to_bytes(host.fmt.in_bytes, "little") for w in words)))
            got = await _answer(line, 100)
            if got is not None:
                failures.append((n, "SEND while busy was answered", got))
            # the next request aborts the waiting SEND; the chip is still running the first sample
            await line.write(encode_request(READ, (host.registers["ID"]).to_bytes(4, "little") + (1).to_bytes(2, "little")))
            got = await _answer(line)
            if got != (OK, READ, ID_WORD.to_bytes(4, "little")):
                failures.append((n, "READ after an aborted SEND", got))
            out = await host.recv(T + 1)
            rec = golden.run_sample(np.asarray(x), label, learn=True)
            mask = (1 << host.fmt.out_data) - 1
            spikes = rec.layers[-1].clf_spikes
            want = [sum(int(b) << k for k, b in enumerate(spikes[t])) if spikes is not None else 0 for t in range(T)] + [int(rec.decision) | 1 << host.fmt.out_data]
            if [w & mask for w in out[:-1]] != want[:-1] or out[-1] != want[-1]:
                failures.append((n, "busy sample: its words differ from golden", [hex(w) for w in out], [hex(w) for w in want]))
            done += 1
            kinds["sample, then SEND while busy"] = kinds.get("sample, then SEND while busy", 0) + 1
        kind, data = fz.case()
        kinds[kind.split(" ")[0]] = kinds.get(kind.split(" ")[0], 0) + 1
        e = expect(data, host.fmt)
        await line.write(data)
        if kind.startswith("wait"):
            got = await _answer(line, 100)
            if got is not None:
                failures.append((n, kind, "answered with nothing pending", got))
        elif e.frame is not None and e.status is None:  # runs: a READ of zeros, an ignored WRITE
            got = await _answer(line)
            cmd, payload = e.frame
            want = (OK, READ, bytes(4 * int.from_bytes(payload[4:6], "little"))) if cmd == READ else (OK, cmd, b"")
            if got != want:
                failures.append((n, kind, data.hex(), got, want))
        elif e.status is None:
            await line.idle(50)
            if line.received:
                failures.append((n, kind, data.hex(), "answered", line.drain().hex()))
        else:
            got = await _answer(line, FRAME_TIMEOUT_BITS + ANSWER_BITS)
            if got != (e.status, e.echo, b""):
                failures.append((n, kind, data.hex(), got, (e.status, e.echo)))
        h = await _health(line, host, done)
        if h is not None:
            failures.append((n, kind, data.hex(), h))
            break
        if n % 100 == 99 and n < cfg["fuzz_cases"] - 1:
            await weights_equal_golden(n)
    try:
        await weights_equal_golden("end")
        run = await run_samples(host, samples[:2], learn=True, golden=golden, check_weights="end")
    except BridgeError as err:  # LinkTimeout too: the chip no longer answers
        failures.append(("end", str(err)))
        run = RunReport(mismatches=[])
    result = {"cases": cfg["fuzz_cases"], "samples_busy": done, "kinds": kinds, "weight_checks": weight_checks, "failures": [list(map(str, f)) for f in failures],
              "run": {"samples": run.samples, "mismatches": [list(map(str, m)) for m in run.mismatches]}, "framing_errors": line.framing_errors}
    (job / "fuzz.json").write_text(json.dumps(result))
    assert not failures, "\n".join(" | ".join(map(str, f))[:300] for f in failures[:20])
    assert not run.mismatches and run.samples == 2, run.mismatches[:5]
