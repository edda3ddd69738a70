"""Co-simulate the board bridge: ``BridgeTop`` in Verilator, the host code of
``localsnn.board`` on a simulated serial line (``tests/sim/bridge_tb.py``).

A test of the host as much as of the gateware, so it lives with the tests: nothing under
``sim/`` or ``rtl/`` imports the host module (docs/architecture.md).

    results = bridge_cosim(spec, samples, lanes=1, tests=["learning_run", "fuzz"])

returns each cocotb test's JSON record; a failing test raises ``CocotbTestFailure`` with the
cocotb messages. As in ``cosimulate``, the build carries the spec's initial parameters whatever
``params`` are: other parameters are written by the host over the line after reset.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from localsnn.errors import BadValueError
from localsnn.golden.params import Params, init_params, save_params
from localsnn.spec import NetworkSpec, dumps

TESTS = ("learning_run", "controls", "faults", "fuzz")
#: clocks per bit in simulation: the smallest the receiver takes, so the line costs little time
SIM_DIVISOR = 8


def bridge_verilog(spec: NetworkSpec, lanes: int, params: Params | None, divisor: int, name: str = "bridge_top", spram: bool = False) -> tuple[str, list[dict]]:
    """The network behind its UART bridge, with initial ``params`` (default: the spec's):
    Verilog and memory map, generated once per design and source (``runner.cached_verilog``)."""
    from localsnn.sim.runner import cached_verilog

    def generate() -> tuple[str, list[dict]]:
        from localsnn.rtl.bridge import BridgeTop
        from localsnn.rtl.generate import verilog_text

        top = BridgeTop(spec, lanes=lanes, params=params, divisor=divisor, spram=spram)
        return verilog_text(top, name), top.memory_map()

    key = {"top": "bridge", "spec": dumps(spec), "lanes": lanes, "params": (params if params is not None else init_params(spec)).digest(), "divisor": divisor, "name": name, "spram": spram}
    return cached_verilog(key, generate)


def bridge_cosim(spec: NetworkSpec, samples, *, lanes: int = 1, params: Params | None = None, tests=TESTS, every_step_samples: int = 1, divisor: int = SIM_DIVISOR, timeout_s: float | None = None, spram: bool = False, fuzz_cases: int = 300, fuzz_seed: int = 1) -> dict:
    from localsnn.sim.runner import run_cocotb

    unknown = set(tests) - set(TESTS)
    if unknown:
        raise BadValueError(f"unknown bridge tests {sorted(unknown)}; there are {', '.join(TESTS)}")
    params = params if params is not None else init_params(spec)
    text, memory_map = bridge_verilog(spec, lanes, None, divisor, spram=spram)
    write_params = params.digest() != init_params(spec).digest()
    with tempfile.TemporaryDirectory(prefix="localsnn-bridge-") as tmp:
        job = Path(tmp)
        (job / "spec.toml").write_text(dumps(spec))
        save_params(params, job / "params.npz", spec)
        xs = np.stack([np.asarray(x, dtype=np.int64) for x, _ in samples])
        labels = np.array([-1 if y is None else int(y) for _, y in samples], dtype=np.int64)
        np.savez(job / "samples.npz", x=xs, labels=labels)
        (job / "job.json").write_text(json.dumps({"memory_map": memory_map, "write_params": write_params, "divisor": divisor, "every_step_samples": every_step_samples, "fuzz_cases": fuzz_cases, "fuzz_seed": fuzz_seed}))
        out = {}
        for t in tests:  # one simulation each: every test starts from the initial weights
            run_dir = job / t
            run_dir.mkdir()
            res = run_cocotb(text, "bridge_top", Path(__file__).parent / "bridge_tb.py", run_dir, extra_env={"LOCALSNN_JOB": str(job)}, testcase=t, timeout_s=timeout_s)
            out[t] = json.loads((job / f"{t}.json").read_text())
            out[t]["_sim"] = {"build_s": res.build_s, "run_s": res.run_s, "built": res.built}
    return out


__all__ = ["SIM_DIVISOR", "TESTS", "bridge_cosim", "bridge_verilog"]
