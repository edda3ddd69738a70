"""The board bridge in co-simulation: host code (localsnn.board) -> simulated serial line ->
UART + frames gateware -> the chip, in Verilator; results equal the golden model's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from localsnn.golden.encode import quantize_pixels
from localsnn.sim.configs import matrix_spec

from localsnn import data
from localsnn import spec as S


def _load_bridge_cosim():
    """``bridge_cosim`` from ``bridge_cosim.py`` beside this file (by path: the tests are no package)."""
    found = importlib.util.spec_from_file_location("localsnn_tests_sim_bridge_cosim", Path(__file__).resolve().parent / "bridge_cosim.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


bridge_cosim = _load_bridge_cosim().bridge_cosim


@pytest.fixture(scope="module")
def digits_samples():
    spec = S.load("digits")
    ds = data.load("digits")
    xq = quantize_pixels(ds.x_test[:10], ds.max_value, spec.encoding.format)
    return spec, [(xq[i], int(ds.y_test[i])) for i in range(10)]


def test_digits_learning_through_the_bridge_equals_golden(digits_samples):
    spec, samples = digits_samples
    out = bridge_cosim(spec, samples, lanes=1, tests=["learning_run"])["learning_run"]
    # the first sample compared after every step (every potential and spike), the rest by
    # their STEP words and decisions, and every weight at the end
    assert out["every_step"]["samples"] == 1 and out["every_step"]["compared"] > 5000
    assert out["run"]["samples"] == len(samples) - 1
    assert out["run"]["mismatches"] == []
    assert out["weights_changed"] > 100  # learning was on: the comparison is not of untouched weights
    assert out["framing_errors"] == 0


def test_event_samples_through_the_bridge_equal_golden():
    """An ``events`` spec (N-MNIST's sensor pooled 8 x 8: 50 channels, counts up to 3 in 4
    steps): the host sends each step's count and events when the chip has put out the step
    before (``chip.input_words``), over the serial line; learning equals golden, every step of
    the first sample and the STEP words, decisions and weights of the others."""
    import dataclasses

    from localsnn.sim.configs import random_pixels

    base = S.load("nmnist")
    enc = dataclasses.replace(base.encoding, format=S.FixedFormat(2, 0, signed=False), downsample=8)
    layer = dataclasses.replace(base.layers[0], size=12, accumulator=26)
    spec = dataclasses.replace(base, name="nmnist-pooled", inputs=50, timesteps=4, encoding=enc, layers=(layer,))
    samples = random_pixels(spec, 4, 1)
    out = bridge_cosim(spec, samples, lanes=1, tests=["learning_run"])["learning_run"]
    assert out["every_step"]["samples"] == 1 and out["every_step"]["compared"] > 800  # 50 x 12 weights, 12 x 10, every step
    assert out["run"]["samples"] == 3 and out["run"]["mismatches"] == []
    assert out["weights_changed"] > 10 and out["framing_errors"] == 0


def test_weights_in_spram_through_the_bridge_equal_golden(digits_samples):
    """The iCEBreaker build with the weights in SPRAM: the host writes them through the bridge
    (the chip starts without), then learning equals golden."""
    spec, samples = digits_samples
    out = bridge_cosim(spec, samples[:4], lanes=1, tests=["learning_run"], spram=True)["learning_run"]
    assert out["run"]["samples"] == 3 and out["run"]["mismatches"] == []
    assert out["weights_changed"] > 100


def test_host_controls_learning_rate_seeds_and_weights(digits_samples):
    spec, samples = digits_samples
    out = bridge_cosim(spec, samples[:3], lanes=1, tests=["controls"])["controls"]
    out.pop("_sim")
    assert out and all(out.values()), out


HOSTILE_BUILDS = {  # name: (spec, lanes, spram)
    "digits": (lambda: S.load("digits"), 1, False),
    "digits-spram": (lambda: S.load("digits"), 1, True),
    "two-layer-lanes4": (lambda: matrix_spec("ell", "rate", "two"), 4, False),
}


@pytest.mark.parametrize("build", list(HOSTILE_BUILDS))
def test_hostile_requests_are_answered_and_change_nothing(build, digits_samples):
    """The faults a hostile host found (a SEND of no words, layer regions without memory,
    addresses above the bus's 30 bits, indices past the end of each memory, a frame broken off
    before its command byte), on the digits net, its SPRAM build and a two-layer net at 4 lanes
    (whose classifier rows have padding lanes): each answered at once, no register or memory
    changed, then learning equals golden."""
    make, lanes, spram = HOSTILE_BUILDS[build]
    spec = make()
    _, samples = digits_samples
    checks = bridge_cosim(spec, samples[:2], lanes=lanes, tests=["faults"], spram=spram)["faults"]
    checks.pop("_sim")
    failed = [f"{k}: {v[1][:300]}" for k, v in checks.items() if not v[0]]
    assert not failed, "\n".join(failed)
    assert int(checks["padding lanes written"][1]) == (24 + 16) * 2 * (lanes == 4)  # 10 classes in rows of 12


def test_fuzzed_requests_are_answered_as_the_frame_format_says(digits_samples):
    """300 seeded malformed and hostile requests in one co-simulation (``sim/hostile.py``), each
    answered as the frame format says and followed by a health check, with real samples and
    sends while busy between them; every weight equals golden throughout, and samples with
    learning on equal golden at the end."""
    spec, samples = digits_samples
    out = bridge_cosim(spec, samples[:8], lanes=1, tests=["fuzz"], fuzz_cases=300)["fuzz"]
    assert out["failures"] == [], "\n".join(" | ".join(f)[:300] for f in out["failures"][:20])
    assert out["run"]["mismatches"] == [] and out["run"]["samples"] == 2
    assert out["samples_busy"] == len(range(20, 300, 40)) and out["weight_checks"] == 3
    assert min(out["kinds"].values()) >= 5 and len(out["kinds"]) >= 12, out["kinds"]  # every kind drawn
    assert out["framing_errors"] == 0
