"""The board bridge in co-simulation: host code (localsnn.board) -> simulated serial line ->
UART + frames gateware -> the chip, in Verilator; results equal the golden model's."""

from __future__ import annotations

import pytest
from localsnn.golden.encode import quantize_pixels
from localsnn.sim.bridge_sim import bridge_cosim

from localsnn import data
from localsnn import spec as S


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


def test_weights_in_spram_through_the_bridge_equal_golden(digits_samples):
    """The iCEBreaker build with the weights in SPRAM: the host writes them through the bridge
    (the chip starts without), then learning equals golden."""
    spec, samples = digits_samples
    out = bridge_cosim(spec, samples[:4], lanes=1, tests=["learning_run"], spram=True)["learning_run"]
    assert out["run"]["samples"] == 3 and out["run"]["mismatches"] == []
    assert out["weights_changed"] > 100


def test_bad_frames_are_refused_and_never_applied(digits_samples):
    spec, samples = digits_samples
    checks = bridge_cosim(spec, samples[:2], lanes=1, tests=["bad_frames"])["bad_frames"]
    for name in ("flipped bit", "wrong crc", "truncated", "unknown command", "READ of 5 bytes", "WRITE of 6 bytes", "too long", "corrupted sample", "garbage then READ", "good frame", "samples after the errors equal golden"):
        status, want, value, want_value = checks[name]
        assert (status, value) == (want, want_value), name


def test_host_controls_learning_rate_seeds_and_weights(digits_samples):
    spec, samples = digits_samples
    out = bridge_cosim(spec, samples[:3], lanes=1, tests=["controls"])["controls"]
    out.pop("_sim")
    assert out and all(out.values()), out
