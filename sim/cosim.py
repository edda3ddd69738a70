"""Run the co-simulation of a spec: generate Verilog, build it (cached per configuration), run
the harness in Verilator (or Icarus Verilog: ``simulator="icarus"``) against the golden model.

    report = cosimulate(spec, samples, lanes=4, learn=True)

``samples`` are ``(quantized pixels, label or None)`` pairs. A mismatch raises
:class:`~localsnn.sim.harness.Mismatch` naming where it happened and both values.
``golden_params`` (default: ``params``) lets a test give the golden model other parameters than
the RTL's, to show a difference is caught.

The Verilator build depends on the design alone (spec, lanes, SPRAM), never on the parameters:
the Verilog carries the spec's initial ones (``init_params``), and when ``params`` differ from
those the harness writes them over the register bus after reset, as a host loads weights
(``chip.write_params``). So tests that differ only in weights, seeds of the weights or samples
share one build. ``lint`` builds with Verilator's ``-Wall`` checks (``sim.lint.lint_flags``, the
justified Amaranth waivers) and raises ``LintError`` on any other warning. ``build_args`` go to the
simulator's compiler (for Icarus e.g. ``["-g2005"]``; the default is cocotb's ``-g2012``).
``power_up_seed`` (Verilator): the memories without initial contents (the SPRAM build's) start
with seeded random bits instead of 0, as an iCE40UP's SPRAM holds whatever it holds at power-up
(``runner.random_power_up``).
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localsnn.chip import check_chip
from localsnn.golden.params import Params, check_params, init_params, save_params
from localsnn.sim.harness import Mismatch
from localsnn.spec import NetworkSpec, dumps


@dataclass
class CosimReport:
    samples: int
    steps: int
    compared: int
    step_cycles: list[int]
    decisions: list[int]
    phase_cycles: list
    build_dir: Path
    built: bool
    build_s: float
    run_s: float
    #: the memories the chip started without (SPRAM: STATUS bit 1 set after reset), written
    #: over the bus before the first sample (STATUS bit 1 then clear)
    host_loaded: list[str]
    #: with ``power_up_seed``: the first words of every memory the chip starts without, read
    #: over the bus before the host wrote them (what the random power-up left there)
    power_up_words: list[int] | None = None


def generate_verilog(spec: NetworkSpec, lanes: int, params: Params | None = None, name: str = "localsnn_top", spram: bool = False, pipeline: str = "full") -> tuple[str, list[dict]]:
    """Verilog text (byte-identical between runs) and the memory map of the network; generated
    once per design and source (``runner.cached_verilog``)."""
    from localsnn.sim.runner import cached_verilog

    def generate() -> tuple[str, list[dict]]:
        from localsnn.rtl.generate import verilog_text
        from localsnn.rtl.top import Network

        net = Network(spec, lanes=lanes, params=params, spram=spram, pipeline=pipeline)
        return verilog_text(net, name), net.memory_map()

    key = {"top": "network", "spec": dumps(spec), "lanes": lanes, "params": (params if params is not None else init_params(spec)).digest(), "name": name, "spram": spram, "pipeline": pipeline}
    return cached_verilog(key, generate)


#: A co-simulation of at most this many samples builds its model for a short run
#: (``run_cocotb(quick=True)``, :data:`~localsnn.sim.runner.OPT_FLAGS`): -O0 saves about 3 s of
#: a two-layer net's build and costs about 0.5 s per sample run, so the two break even near
#: six samples.
QUICK_BUILD_SAMPLES = 4


def cosimulate(
    spec: NetworkSpec,
    samples: list[tuple[np.ndarray, int | None]],
    *,
    lanes: int = 4,
    params: Params | None = None,
    learn: bool = True,
    every_step: bool = True,
    idle: float = 0.0,
    stall: float = 0.0,
    seed: int = 0,
    waves: bool | None = None,
    timeout_s: float | None = None,
    golden_params: Params | None = None,
    on_progress=None,
    lint: bool = False,
    spram: bool = False,
    simulator: str = "verilator",
    build_args: Sequence[str] = (),
    power_up_seed: int | None = None,
    pipeline: str = "full",
) -> CosimReport:
    from localsnn.sim.runner import SIMULATORS, BuildFailed, CocotbTestFailure, random_power_up, run_cocotb

    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; allowed: {', '.join(SIMULATORS)}")
    if lint and simulator != "verilator":
        raise ValueError("lint=True runs Verilator's own checks; it needs simulator='verilator'")
    if power_up_seed is not None and simulator != "verilator":
        raise ValueError("power_up_seed fills uninitialised memories through Verilator's +verilator+rand+reset; it needs simulator='verilator'")

    # everything that can be refused is refused before Verilator builds anything
    check_chip(spec, lanes)
    params = params if params is not None else init_params(spec)
    check_params(spec, params, "the RTL's parameters")
    if golden_params is not None:
        check_params(spec, golden_params, "golden's parameters")
    # the build carries the spec's initial parameters; others are written over the bus
    text, memory_map = generate_verilog(spec, lanes, spram=spram, pipeline=pipeline)
    write_params = params.digest() != init_params(spec).digest()
    with tempfile.TemporaryDirectory(prefix="localsnn-job-") as tmp:
        job = Path(tmp)
        (job / "spec.toml").write_text(dumps(spec))
        save_params(params, job / "params.npz", spec)  # the RTL's parameters
        save_params(golden_params if golden_params is not None else params, job / "golden_params.npz", spec)
        xs = np.stack([np.asarray(x, dtype=np.int64) for x, _ in samples])
        labels = np.array([-1 if y is None else int(y) for _, y in samples], dtype=np.int64)
        np.savez(job / "samples.npz", x=xs, labels=labels)
        (job / "job.json").write_text(json.dumps({"memory_map": memory_map, "write_params": write_params, "learn": learn, "every_step": every_step, "idle": idle, "stall": stall, "seed": seed, "power_up_probe": power_up_seed is not None}))
        here = Path(__file__).parent
        stop = threading.Event()
        watcher = None
        if on_progress is not None:  # the simulator writes progress.txt after every sample
            def watch():
                seen = -1
                while not stop.wait(0.3):
                    try:
                        n = int((job / "progress.txt").read_text())
                    except (OSError, ValueError):
                        continue
                    if n != seen:
                        seen = n
                        on_progress(n, len(samples))
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
        # lint: the build itself runs Verilator's -Wall checks with the justified Amaranth waivers
        # (sim/lint.py), and fails on any other warning: a build of its own, cached as any other
        args = list(build_args)
        if lint:
            from localsnn.sim.lint import AMARANTH_WAIVERS, lint_flags

            args += lint_flags(AMARANTH_WAIVERS)
        try:
            res = run_cocotb(text, "localsnn_top", here / "cocotb_top.py", job, extra_env={"LOCALSNN_JOB": str(job)}, waves=waves, timeout_s=timeout_s, build_args=args,
                             quick=len(samples) <= QUICK_BUILD_SAMPLES, simulator=simulator,
                             plusargs=random_power_up(power_up_seed) if power_up_seed is not None else ())
        except BuildFailed as err:
            if lint:
                from localsnn.sim.lint import LintError, warnings_in

                found = warnings_in(err.log)
                if found:
                    listing = "\n".join(f"  {code}: {msg}" for code, msg in found)
                    raise LintError(f"verilator -Wall of the generated Verilog ({spec.name}, {lanes} lanes) found {len(found)} warning(s)/error(s):\n{listing}\n(waive a warning class in sim/lint.py only if it is harmless)", found, build_args) from None
            raise
        except CocotbTestFailure:
            report = job / "report.json"
            if report.is_file():
                mismatch = json.loads(report.read_text()).get("mismatch")
                if mismatch:
                    raise Mismatch(mismatch) from None
            raise
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
        out = json.loads((job / "report.json").read_text())
    return CosimReport(
        samples=out["samples"], steps=out["steps"], compared=out["compared"], step_cycles=out["step_cycles"],
        decisions=out["decisions"], phase_cycles=out["phase_cycles"], build_dir=res.build_dir, built=res.built,
        build_s=res.build_s, run_s=res.run_s, host_loaded=out["host_loaded"], power_up_words=out.get("power_up_words"),
    )


__all__ = ["CosimReport", "cosimulate", "generate_verilog"]
