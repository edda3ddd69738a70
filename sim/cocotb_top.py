"""cocotb test module: the co-simulation harness on the generated Verilog, in Verilator or Icarus.

The pytest side (``sim/cosim.py``) writes a job folder and points ``LOCALSNN_JOB`` at it:
``spec.toml``, ``params.npz`` (the RTL's parameters: the memories' initial contents, or written
over the bus after reset where ``job.json`` says ``write_params``), ``golden_params.npz``,
``samples.npz`` (quantized pixels ``x`` and ``labels``, -1 = no label), ``job.json`` (memory
map, write_params, learning on/off, idle/stall probabilities, seed). The test writes ``report.json`` there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np

from localsnn import spec as specmod
from localsnn.chip import address, load_weights_if_missing, write_params
from localsnn.golden.params import load_params
from localsnn.sim.drivers import INPUTS, BusMaster, StreamSink, StreamSource, UnknownValue, read, reset, start_clock
from localsnn.sim.harness import Mismatch, check_samples, stall_limit


class CocotbChip:
    """The harness's ``Chip`` interface on the cocotb drivers."""

    def __init__(self, dut, *, idle: float, stall: float, seed: int, memory_map: list[dict]) -> None:
        self.src = StreamSource(dut, "i", dut.clk, idle_prob=idle, seed=seed)
        self.sink = StreamSink(dut, "o", dut.clk, stall_prob=stall, seed=seed + 1)
        self.bus = BusMaster(dut, "bus", dut.clk, timeout=100_000)
        self.limit = stall_limit(memory_map)

    async def send(self, words):
        await self.src.send_many(words)

    async def peek(self) -> int:
        return await self.sink.peek(self.limit)

    async def accept(self) -> None:
        await self.sink.recv()

    async def read(self, addr: int) -> int:
        return await self.bus.read(addr)

    async def write(self, addr: int, value: int) -> None:
        await self.bus.write(addr, value & 0xFFFFFFFF)


@cocotb.test()
async def cosim(dut):
    job = Path(os.environ["LOCALSNN_JOB"])
    cfg = json.loads((job / "job.json").read_text())
    spec = specmod.load(job / "spec.toml")
    params = load_params(job / "golden_params.npz", spec)
    rtl_params = load_params(job / "params.npz", spec)  # in the build's memories, or written below
    with np.load(job / "samples.npz") as data:
        xs, labels = data["x"], data["labels"]
    samples = [(xs[k], None if labels[k] < 0 else int(labels[k])) for k in range(len(xs))]
    start_clock(dut)
    await reset(dut)
    for name in INPUTS:  # every input driven from reset on (in a 4-state simulator, else Z)
        read(getattr(dut, name))
    chip = CocotbChip(dut, idle=cfg["idle"], stall=cfg["stall"], seed=cfg["seed"], memory_map=cfg["memory_map"])
    probed = None
    if cfg.get("power_up_probe"):  # what the memories the chip starts without hold before the host writes
        probed = [await chip.read(address(e["region"]) + k) for e in cfg["memory_map"] if e.get("host_init") for k in range(4)]
    loaded = await load_weights_if_missing(chip, cfg["memory_map"], rtl_params)  # SPRAM: the weights it starts without
    if cfg["write_params"]:  # parameters other than the build's (the spec's initial ones)
        await write_params(chip, cfg["memory_map"], rtl_params, only=lambda entry: entry["name"] not in loaded)
    report = None
    error = None
    done = []

    def log(message: str) -> None:  # after every sample: the log, and a progress file for the caller
        dut._log.info(message)
        done.append(message)
        (job / "progress.txt").write_text(str(len(done)))

    try:
        report = await check_samples(chip, spec, params, cfg["memory_map"], samples, learn=cfg["learn"], every_step=cfg["every_step"], log=log)
    except (Mismatch, UnknownValue) as err:  # an X or Z in what is compared is a mismatch too
        error = str(err)
    result = {"mismatch": error, "host_loaded": loaded, "power_up_words": probed}
    if report is not None:
        result.update(samples=report.samples, steps=report.steps, compared=report.compared, step_cycles=report.step_cycles, decisions=report.decisions, phase_cycles=report.phase_cycles)
    (job / "report.json").write_text(json.dumps(result))
    if error:
        raise AssertionError(error)
