"""``localsnn bench rtl``: clock cycles per time step of the RTL beside their lower bound.

The bound of a time step is the sum over its phases of the memory words the phase must touch
divided by the ports it has for them: every memory has one read and one write port, and the
memories of a phase work in parallel, so a phase costs at least as many clocks as its busiest
memory has words to read (or, for a read-modify-write, words to write). Phases that run side
by side (ELL's CUPD and HUPD, FELL's CFTRACE and FTRACE: they share no memory) count as the
longer of the two. The words are counted
from the golden model's record of the same samples (its per-step event counters: active
inputs, spikes, classifier errors; and the rows whose traces are live). The measured cycles are
the chip's own STEP_CYCLES register, read in co-simulation.
"""

from __future__ import annotations

import numpy as np

from localsnn import rules as R
from localsnn.golden import Golden
from localsnn.sim.configs import matrix_spec
from localsnn.sim.cosim import cosimulate

GOAL = 1.3


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def step_bounds(spec, golden: Golden, rec, lanes: int, learn: bool = True) -> list[int]:
    """The lower bound (clock cycles) of every time step of one recorded sample."""
    return [sum(layers) for layers in layer_bounds(spec, golden, rec, lanes, learn)]


def layer_bounds(spec, golden: Golden, rec, lanes: int, learn: bool = True) -> list[list[int]]:
    """The lower bound of every layer at every time step: ``out[t][layer]``."""
    out = []
    nl = len(spec.layers)
    seen = [np.zeros(golden.layers[i].fan_in, dtype=bool) for i in range(nl)]  # live input rows
    fired = [np.zeros(golden.layers[i].size, dtype=bool) for i in range(nl)]  # live classifier rows
    prev = [dict.fromkeys(rec.counters[0], 0) for _ in range(nl)]
    for t in range(spec.timesteps):
        per_layer = []
        x = rec.inputs[t]
        for i, L in enumerate(golden.layers):
            total = 0
            cum = rec.step_counters[t][i]
            d = {k: cum[k] - prev[i][k] for k in cum}
            prev[i] = cum
            N, C = L.size, L.classes
            wpr, cpr = _ceil(N, lanes), _ceil(C, lanes)
            n_in = int(np.count_nonzero(x))
            spk = d["spikes"]
            learns = learn and spec.rule.learns and spec.layers[i].learn and rec.label is not None
            err = d["error_steps"] > 0
            if L.model == "lif":
                total += wpr * max(d["input_events"], 1)  # FWD: the rows of w of the active inputs
                total += max(wpr, spk)  # COMPACT: spike bits read, spike list written
                total += cpr * max(spk, 1)  # CFWD: classifier rows of the spikes
                if learns and spec.rule.traces:
                    seen[i] |= x != 0
                    fired[i] |= rec.layers[i].spikes[t] != 0
                    total += n_in + spk  # LIVE, CLIVE: one stamp per event
                    total += max(int(fired[i].sum()) * cpr, int(seen[i].sum()) * wpr)  # CFTRACE beside FTRACE
                    total += N * cpr if err else 0  # BACKPROP
                elif learns and err:
                    total += N * cpr + max(spk * cpr, n_in * wpr)  # BACKPROP; CUPD beside HUPD
            else:
                total += int(seen[i].sum())  # PLIST: the trace P of the live inputs
                total += wpr * max(d["input_events"], 1)  # FWD over the inputs with P != 0
                total += max(wpr, spk) + cpr * max(spk, 1)  # COMPACT, READOUT
                if learns:
                    total += N * cpr + d["input_events"] * wpr + wpr  # BACKPROP, HUPD, BUPD
                seen[i] |= x != 0
                total += n_in + int(seen[i].sum())  # LIVE, TRACES
            x = rec.layers[i].spikes[t]
            per_layer.append(total)
        out.append(per_layer)
    return out


def bench_rtl(rules=R.NAMES, lanes=(1, 4, 8), samples: int = 4, encoding: str = "direct", pipeline: str = "full") -> list[dict]:
    """Print and return, per rule and lanes, measured and bound cycles per time step, with the
    phases' ``pipeline`` (``full``: the most fill)."""
    from localsnn.data import load

    ds = load("digits")
    rows = []
    print(f"RTL clock cycles per time step: digits 64-64-10, {encoding} input, learning on, {pipeline} pipeline, {samples} test samples each")
    print(f"{'rule':8s} {'lanes':>5s} {'measured':>9s} {'bound':>9s} {'ratio':>6s} {'goal <= %.1f' % GOAL:>12s}  {'simulated cycles/s':>18s} {'samples/s':>9s}")
    for rule in rules:
        spec = matrix_spec(rule, encoding, "digits")
        for ln in lanes:
            g = Golden(spec)
            x = g.quantize(ds.x_test[:samples], ds.max_value)
            ys = [int(v) for v in ds.y_test[:samples]]
            report = cosimulate(spec, list(zip(x, ys)), lanes=ln, params=g.params, every_step=False, pipeline=pipeline)
            ref = Golden(spec, g.params.copy())
            bounds = []
            for xi, yi in zip(x, ys):
                bounds += step_bounds(spec, ref, ref.run_sample(xi, yi), ln)
            measured = float(np.mean(report.step_cycles))
            bound = float(np.mean(bounds))
            row = {
                "rule": rule, "lanes": ln, "pipeline": pipeline, "measured": measured, "bound": bound, "ratio": measured / bound,
                "sim_cycles_per_s": sum(report.step_cycles) / report.run_s, "samples_per_s": samples / report.run_s,
            }
            rows.append(row)
            verdict = "ok" if row["ratio"] <= GOAL else "missed"
            print(f"{rule:8s} {ln:5d} {measured:9.0f} {bound:9.0f} {row['ratio']:6.2f} {verdict:>12s}  {row['sim_cycles_per_s']:18.0f} {row['samples_per_s']:9.2f}")
    return rows


def bench_pipeline(rules=R.NAMES, lanes: int = 4, samples: int = 4, encoding: str = "direct") -> list[dict]:
    """Two hidden layers (64-24-16-10): cycles per step with the layers in LOCKSTEP and
    pipelined over the steps, beside their bounds: the sum of the layers' bounds, and the
    busiest layer's steps of a sample spread over its steps (a pipeline cannot do better)."""
    from localsnn.data import load

    ds = load("digits")
    rows = []
    print(f"\nlayers pipelined over time steps: 64-24-16-10, {encoding} input, learning on, {lanes} lanes, {samples} test samples each")
    print(f"{'rule':8s} {'lockstep':>9s} {'bound (sum)':>12s} {'pipelined':>10s} {'bound (busiest layer)':>22s} {'speed-up':>9s}")
    for rule in rules:
        spec = matrix_spec(rule, encoding, "two")
        g = Golden(spec)
        x = g.quantize(ds.x_test[:samples], ds.max_value)
        ys = [int(v) for v in ds.y_test[:samples]]
        lock = cosimulate(spec, list(zip(x, ys)), lanes=lanes, params=g.params, every_step=True)
        pipe = cosimulate(spec, list(zip(x, ys)), lanes=lanes, params=g.params, every_step=False)
        ref = Golden(spec, g.params.copy())
        # per sample, b[t][l]: LOCKSTEP's bound sums every layer at every step; a pipeline cannot
        # finish a sample before its busiest layer has done all its steps: max_l sum_t b[t][l]
        per = [np.array(layer_bounds(spec, ref, ref.run_sample(xi, yi), lanes)) for xi, yi in zip(x, ys)]
        row = {
            "rule": rule, "lockstep": float(np.mean(lock.step_cycles)), "pipelined": float(np.mean(pipe.step_cycles)),
            "bound_sum": float(np.mean([b.sum(axis=1).mean() for b in per])),
            "bound_max": float(np.mean([b.sum(axis=0).max() / len(b) for b in per])),
        }
        row["speedup"] = row["lockstep"] / row["pipelined"]
        rows.append(row)
        print(f"{rule:8s} {row['lockstep']:9.0f} {row['bound_sum']:12.0f} {row['pipelined']:10.0f} {row['bound_max']:22.0f} {row['speedup']:8.2f}x")
    return rows


__all__ = ["GOAL", "bench_pipeline", "bench_rtl", "layer_bounds", "step_bounds"]
