"""``localsnn bench golden``: golden-model throughput on MNIST 784-800-10, T = 10, one CPU core.

Online learning is timed from random initial weights (the slowest phase: the classifier is
wrong at almost every step, so almost every step updates weights), batched inference on the
10,000 MNIST test images. The process is pinned to one core and every thread pool is limited
to one thread, so the figures are single-core figures.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from localsnn import data
from localsnn import rules as rulesmod
from localsnn import spec as specmod
from localsnn.golden.encode import quantize_pixels
from localsnn.golden.model import Golden

GOAL_LEARN = 200.0  # samples/s, online learning (issue: golden model)
GOAL_INFER = 5000.0  # samples/s, batched inference

#: the shipped MNIST spec of every rule that has one (localsnn.rules)
SPEC_FOR_RULE = {name: rulesmod.rule(name).mnist_spec for name in rulesmod.names(mnist=True)}


def _pin(core: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this system)"
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if core is None else core
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def bench_golden(samples: int = 2000, rules: list[str] | None = None, data_dir=None, core: int | None = None) -> dict:
    from threadpoolctl import threadpool_limits

    names = list(rules or SPEC_FOR_RULE)
    unknown = [r for r in names if r not in SPEC_FOR_RULE]
    if unknown:
        from localsnn.errors import LocalsnnError

        raise LocalsnnError(f"unknown rule(s) {unknown} for the benchmark; allowed: {', '.join(SPEC_FOR_RULE)}")
    pinned = _pin(core)
    ds = data.load("mnist", data_dir)
    results: dict[str, float] = {}
    print(f"golden benchmark: MNIST 784-800-10, T = 10, direct input; {pinned}; {platform.processor() or platform.machine()}, numpy {np.__version__}")
    with threadpool_limits(1):
        for rule in names:
            s = specmod.load(SPEC_FOR_RULE[rule])
            g = Golden(s)
            x = quantize_pixels(ds.x_train[: samples + 20], ds.max_value, s.encoding.format)
            y = ds.y_train[: samples + 20]
            for i in range(20):  # warm-up (tables, caches)
                g.run_sample(x[i], int(y[i]), record=False)
            t0 = time.perf_counter()
            for i in range(20, samples + 20):
                g.run_sample(x[i], int(y[i]), record=False)
            dt = time.perf_counter() - t0
            rate = samples / dt
            results[f"learn_{rule}"] = rate
            steps = s.timesteps * samples
            print(f"  online learning, {rule:5s}: {rate:8.0f} samples/s  ({1e6 * dt / steps:6.0f} us per time step, {samples} samples from random init)  goal >= {GOAL_LEARN:.0f}: {rate / GOAL_LEARN:.2f}x")
        s = specmod.load("mnist")
        g = Golden(s)
        xt = quantize_pixels(ds.x_test, ds.max_value, s.encoding.format)
        g.infer(xt[:1000])  # warm-up
        t0 = time.perf_counter()
        counts = g.infer(xt)
        dt = time.perf_counter() - t0
        rate = len(xt) / dt
        results["infer"] = rate
        print(f"  batched inference:      {rate:8.0f} samples/s  ({len(xt)} test samples, learning off)              goal >= {GOAL_INFER:.0f}: {rate / GOAL_INFER:.2f}x")
        del counts
    return results
