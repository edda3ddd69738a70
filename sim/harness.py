"""The co-simulation harness: the same samples through the RTL and the golden model, compared
after every time step.

It is written once against a small asynchronous ``Chip`` interface, so the same comparison
runs in cocotb + Verilator (``sim/cocotb_top.py``) and in Amaranth's simulator
(``sim/amaranth_chip.py``, for quick unit tests):

``await chip.send(words)``      put words on the input stream
``await chip.peek()``           wait for an output word and return it, *without* taking it
                                (``TimeoutError`` if none comes: the chip stalled)
``await chip.accept()``         take the output word (the core then goes on)
``await chip.read(addr)``       one register-bus read; ``await chip.write(addr, value)``

While an output word waits, the core is stalled, so the bus reads every membrane potential
and spike of that step; at the end of each sample every weight is read back too. The first
difference raises :class:`Mismatch`, naming the sample, step, layer, neuron or synapse and
both values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from localsnn.chip import DECISION, INDEX_BITS, LAYER_REGIONS, STEP, input_words, io_widths, region_elements, to_signed
from localsnn.golden import Golden, Params
from localsnn.spec import NetworkSpec


class Mismatch(AssertionError):
    """RTL and golden disagree; the message names where and both values."""


@dataclass
class Region:
    name: str
    region: int
    shape: tuple[int, ...]
    row_stride: int | None = None

    def addr(self, *idx: int) -> int:
        if len(idx) == 2:
            flat = idx[0] * self.row_stride + idx[1]
        else:
            flat = idx[0]
        return (self.region << INDEX_BITS) | flat


def regions(memory_map: list[dict]) -> dict[str, Region]:
    out = {}
    for entry in memory_map:
        if "shape" in entry:
            out[entry["name"]] = Region(entry["name"], entry["region"], tuple(entry["shape"]), entry.get("row_stride"))
    return out


def register(memory_map: list[dict], name: str) -> int:
    return memory_map[0]["registers"][name]["index"]


@dataclass
class Report:
    samples: int = 0
    steps: int = 0
    compared: int = 0  # values compared
    step_cycles: list[int] = field(default_factory=list)
    decisions: list[int] = field(default_factory=list)
    phase_cycles: list[list[list[int]]] = field(default_factory=list)  # per step: per layer: per phase


async def read_array(chip, reg: Region) -> np.ndarray:
    """A whole memory region; in one burst where the chip offers ``read_many(addr, count)``
    (the board bridge), else element by element."""
    rows, cols = (1, reg.shape[0]) if len(reg.shape) == 1 else reg.shape
    stride = cols if len(reg.shape) == 1 else reg.row_stride
    if hasattr(chip, "read_many"):
        flat = await chip.read_many(reg.addr(0) if len(reg.shape) == 1 else reg.addr(0, 0), rows * stride)
        arr = np.array([to_signed(v) for v in flat], dtype=np.int64).reshape(rows, stride)[:, :cols]
    else:
        addr = (lambda r, c: reg.addr(c)) if len(reg.shape) == 1 else reg.addr
        arr = np.array([[to_signed(await chip.read(addr(r, c))) for c in range(cols)] for r in range(rows)])
    return arr[0] if len(reg.shape) == 1 else arr


def _first_difference(rtl: np.ndarray, gold: np.ndarray) -> tuple:
    idx = tuple(int(i) for i in np.argwhere(rtl != gold)[0])
    return idx, int(rtl[idx]), int(gold[idx])


def _check(rtl, gold, where: str, what: str, report: Report) -> None:
    rtl = np.asarray(rtl)
    gold = np.asarray(gold).astype(np.int64)
    report.compared += gold.size
    if rtl.shape != gold.shape or not np.array_equal(rtl, gold):
        if rtl.shape != gold.shape:
            raise Mismatch(f"{where}: {what}: RTL shape {rtl.shape}, golden {gold.shape}")
        idx, a, b = _first_difference(rtl, gold)
        names = {1: "neuron", 2: "synapse (input, neuron)"}
        raise Mismatch(f"{where}: {what} {names.get(len(idx), 'index')} {idx if len(idx) > 1 else idx[0]}: RTL {a}, golden {b}")


def stall_limit(memory_map: list[dict]) -> int:
    """Clocks a co-simulation waits for an output word before it calls the chip stalled:
    ``64 * E + 100,000`` with ``E`` every bus index of every memory (a time step touches each
    word a few times at most: a working chip is far inside it, with idle input and backpressure
    too; a stalled one fails in seconds instead of at the run's ``timeout_s``)."""
    return 64 * sum(region_elements(e) for e in memory_map if "shape" in e) + 100_000


async def _peek(chip, where: str) -> int:
    try:
        return await chip.peek()
    except TimeoutError as err:
        raise Mismatch(f"{where}: {err}: the chip stalled") from None


async def check_samples(
    chip,
    spec: NetworkSpec,
    params: Params,
    memory_map: list[dict],
    samples: list[tuple[np.ndarray, int | None]],
    *,
    learn: bool = True,
    every_step: bool = True,
    log=None,
    golden: Golden | None = None,
) -> Report:
    """Run ``samples`` (quantized pixels or per-step event values, label or None) through the chip and the golden model
    from the same ``params``; compare after every step (``every_step``) and after every sample.
    ``golden``: a golden model to go on with (its weights and LFSR states as the chip's now)
    instead of a new one from ``params``.
    """
    golden = golden if golden is not None else Golden(spec, params.copy())
    regs = regions(memory_map)
    report = Report()
    nl = len(spec.layers)
    # learning on or off; LOCKSTEP when every layer is compared after every step (else the
    # layers run pipelined over the steps and only the outputs and the weights are compared)
    await chip.write(register(memory_map, "CTRL"), (1 if learn else 0) | (2 if every_step else 0))
    step_cycles_reg = register(memory_map, "STEP_CYCLES")
    phases = [len(e["phases"]) for e in memory_map if "phases" in e]
    phase_base = register(memory_map, "PHASE_BASE")
    for n, (x, label) in enumerate(samples):
        rec = golden.run_sample(np.asarray(x), label, learn=learn)
        chunks = input_words(spec, x, label)
        for t in range(spec.timesteps):
            if t < len(chunks):  # events: step t's words, sent once the chip has put out step t-1
                await chip.send(chunks[t])
            word = await _peek(chip, f"sample {n}, step {t}")
            kind, payload = word >> _data_bits(spec), word & ((1 << _data_bits(spec)) - 1)
            where = f"sample {n}, step {t}"
            if kind != STEP:
                raise Mismatch(f"{where}: expected a STEP word, got {word:#x}")
            last = rec.layers[-1]
            if last.clf_spikes is not None:
                gold_bits = sum(int(b) << k for k, b in enumerate(last.clf_spikes[t]))
                if payload != gold_bits:
                    raise Mismatch(f"{where}: output spikes of the last classifier: RTL {payload:#b}, golden {gold_bits:#b}")
            if every_step:
                for i in range(nl):
                    g = rec.layers[i]
                    _check(await read_array(chip, regs[f"layer{i}.u"]), g.potential[t], where, f"layer {i} potential", report)
                    _check(await read_array(chip, regs[f"layer{i}.o"]), g.spikes[t], where, f"layer {i} spike", report)
                    if g.clf_potential is not None:
                        _check(await read_array(chip, regs[f"layer{i}.clf_u"]), g.clf_potential[t], where, f"layer {i} classifier potential", report)
                        _check(await read_array(chip, regs[f"layer{i}.clf_o"]), g.clf_spikes[t], where, f"layer {i} classifier spike", report)
                    if g.readout is not None:
                        _check(await read_array(chip, regs[f"layer{i}.y"]), g.readout[t], where, f"layer {i} readout", report)
            report.step_cycles.append(await chip.read(step_cycles_reg))
            report.phase_cycles.append([[await chip.read(phase_base + LAYER_REGIONS * i + p) for p in range(phases[i])] for i in range(nl)])
            await chip.accept()
            report.steps += 1
        word = await _peek(chip, f"sample {n}, the decision")
        kind, payload = word >> _data_bits(spec), word & ((1 << _data_bits(spec)) - 1)
        if kind != DECISION or payload != rec.decision:
            raise Mismatch(f"sample {n}: decision: RTL word {word:#x} (class {payload}), golden class {rec.decision}")
        await chip.accept()
        report.decisions.append(payload)
        for i in range(nl):
            lp = golden.params.layers[i]
            where = f"sample {n}, after the last step"
            _check(await read_array(chip, regs[f"layer{i}.w"]), lp.w, where, f"layer {i} weight", report)
            _check(await read_array(chip, regs[f"layer{i}.clf_w"]), lp.clf_w, where, f"layer {i} classifier weight", report)
            if lp.bias is not None:
                _check(await read_array(chip, regs[f"layer{i}.bias"]), lp.bias, where, f"layer {i} bias", report)
        report.samples += 1
        if log is not None:
            log(f"sample {n}: equal ({report.compared} values so far), decision {payload}, {report.step_cycles[-1]} cycles in the last step")
    return report


def _data_bits(spec: NetworkSpec) -> int:
    return io_widths(spec)[1]
