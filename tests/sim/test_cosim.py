"""RTL against golden, bit for bit, in cocotb + Verilator: every rule x encoding on the digits
net and a two-hidden-layer net at lanes 1, 4 and 8 (72 designs), the corner-case reproducers, 25 seeded
random specs drawn over every field's range (corners first, ``sim.configs.random_spec``), and
random idle and backpressure on the streams. One build per configuration (cached under
sim_build/).

Every layer is compared after every step in LOCKSTEP mode; nets with two layers also run with
the layers pipelined over the steps (the default), compared on every output word and on every
weight after every sample."""

from __future__ import annotations

import re

import numpy as np
import pytest

from localsnn.chip import PHASES, engine
from localsnn.data import load
from localsnn.golden import Golden
from localsnn.sim.configs import MATRIX_ENCODINGS, RULES, corner_samples, corner_specs, matrix_spec, random_pixels, random_spec
from localsnn.sim.cosim import cosimulate
from localsnn.sim.harness import Mismatch


def _verilator_or_skip():
    from localsnn.sim.runner import ToolchainMissing, VerilatorNotFound, verilator_env

    try:
        verilator_env()
    except (VerilatorNotFound, ToolchainMissing) as err:  # only when the toolchain truly is missing
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def digit_samples(spec, ds, n, offset=0):
    g = Golden(spec)
    x = g.quantize(ds.x_train[offset : offset + n], ds.max_value)
    return [(x[i], int(ds.y_train[offset + i])) for i in range(n)]


#: the lanes of each net: one lane (word = neuron, no lane select), four and eight (words of
#: neighbouring neurons, padding lanes for the 10 classes; the 4-lane runs with random idle and
#: backpressure on the streams). The random specs add 1 to 32 lanes, dividing their layers or not.
MATRIX_LANES = {"digits": (1, 4, 8), "two": (1, 4, 8)}
MATRIX = [(r, e, n, l) for n, lanes in MATRIX_LANES.items() for r in RULES for e in MATRIX_ENCODINGS for l in lanes]


@pytest.mark.parametrize("rule, encoding, net, lanes", MATRIX, ids=[f"{n}-{r}-{e}-L{l}" for r, e, n, l in MATRIX])
def test_rule_encoding_lanes(digits, rule, encoding, net, lanes):
    _verilator_or_skip()
    spec = matrix_spec(rule, encoding, net)
    samples = digit_samples(spec, digits, 2, offset=lanes)
    report = cosimulate(spec, samples, lanes=lanes, idle=0.1 * (lanes == 4), stall=0.1 * (lanes == 4), seed=lanes)
    assert report.samples == 2 and report.steps == 2 * spec.timesteps
    assert report.compared > 0
    if len(spec.layers) > 1:
        # the layers pipelined over the time steps (the default): the same outputs and weights
        piped = cosimulate(spec, samples, lanes=lanes, every_step=False, stall=0.2, seed=lanes)
        assert piped.decisions == report.decisions
        assert sum(piped.step_cycles) < sum(report.step_cycles)


@pytest.mark.parametrize("rule", RULES)
def test_the_compact_pipeline_equals_golden(digits, rule):
    """The boards' pipeline (rtl/loop.py "compact": the stages between memory reads merged into
    one clock) on the two-layer net at 4 lanes: the same values as golden, and no more clocks
    than the full pipeline of the matrix above (it has less fill)."""
    _verilator_or_skip()
    spec = matrix_spec(rule, "rate", "two")
    samples = digit_samples(spec, digits, 2, offset=4)
    compact = cosimulate(spec, samples, lanes=4, pipeline="compact")
    full = cosimulate(spec, samples, lanes=4)
    assert compact.steps == full.steps == 2 * spec.timesteps and compact.compared == full.compared > 0
    assert compact.decisions == full.decisions
    assert sum(compact.step_cycles) < sum(full.step_cycles)


#: rule and lanes of the SPRAM builds: the matrix's two-layer designs at one and at eight lanes,
#: so that the run without SPRAM shares their builds
SPRAM = [("ell", 8), ("fell", 1), ("decolle", 8)]


@pytest.mark.parametrize("rule, lanes", SPRAM, ids=[f"{r}-L{l}" for r, l in SPRAM])
def test_weights_in_spram_are_written_by_the_host_then_equal_golden(digits, rule, lanes):
    """Single-port weight memories without initial contents (an iCE40UP's SPRAM), filled with
    random bits at power-up (``power_up_seed``: the words read before the host writes are not
    all 0): the chip says it has no weights (STATUS bit 1) until the harness has written them
    over the bus, padding lanes with zeros (the bit is then clear, ``load_weights_if_missing``
    checks it); learning throttles the phases that read
    and write them, and every step still equals golden. Against the same samples on the build
    without SPRAM: a read-modify-write phase (``THROTTLED``, docs/rtl.md) issues a word every
    other clock, n words in n - 1 clocks more than without (n + f, f its pipeline fill and
    control, the same at every step); every other phase takes the same clocks."""
    _verilator_or_skip()
    spec = matrix_spec(rule, "rate" if rule != "decolle" else "direct", "two")
    samples = digit_samples(spec, digits, 2, offset=lanes)
    report = cosimulate(spec, samples, lanes=lanes, spram=True, power_up_seed=lanes)
    assert report.samples == 2 and report.compared > 0
    assert any(report.power_up_words), "the random power-up left the SPRAM words 0"
    keys = ("w",) if rule == "decolle" else ("w", "clf_w")
    assert report.host_loaded == [f"layer{i}.{k}" for i in (0, 1) for k in keys]
    plain = cosimulate(spec, samples, lanes=lanes)
    assert plain.host_loaded == [] and plain.decisions == report.decisions
    one, two = np.array(report.phase_cycles), np.array(plain.phase_cycles)  # step, layer, phase
    for k, name in enumerate(PHASES[engine(spec, 0)]):
        if name not in THROTTLED[rule]:
            assert (one[..., k] == two[..., k]).all(), name
            continue
        busy = two[..., k] > 1  # a step without work: no word, at most 1 clock
        assert busy.any(), name
        assert (one[..., k][~busy] == two[..., k][~busy]).all(), name
        n = one[..., k][busy] - two[..., k][busy] + 1  # the words
        fill = two[..., k][busy] - n  # the pipeline's fill and the control: one constant
        assert (n >= 1).all() and (n > 1).any(), (name, two[..., k][busy], one[..., k][busy])
        assert len(set(fill.tolist())) == 1 and fill[0] > 0, (name, two[..., k][busy], one[..., k][busy])


#: the phases that read and write a single-port memory, per rule (docs/rtl.md)
THROTTLED = {"ell": ("HUPD", "CUPD"), "fell": ("CFTRACE", "FTRACE"), "decolle": ("HUPD",)}


CORNERS = corner_specs()


@pytest.mark.parametrize("name", list(CORNERS))
def test_corner_spec(name):
    """Each reproducer of a corner-case bug (``corner_specs``), learning on, at lanes 1 and,
    for the one-neuron nets, the 2-lane padding too: RTL = golden after every step."""
    _verilator_or_skip()
    spec = CORNERS[name]
    report = cosimulate(spec, corner_samples(spec), lanes=2 if name == "lfsr8-decolle" else 1)
    assert report.samples == 2 and report.compared > 0


@pytest.mark.parametrize("seed", range(25))
def test_random_spec(seed):
    _verilator_or_skip()
    spec, lanes = random_spec(seed)
    samples = random_pixels(spec, 3, seed)
    report = cosimulate(spec, samples, lanes=lanes, idle=0.2, stall=0.2, seed=seed, lint=True)
    assert report.samples == 3
    if len(spec.layers) > 1:
        piped = cosimulate(spec, samples, lanes=lanes, every_step=False, idle=0.2, stall=0.2, seed=seed, lint=True)  # the same (linted) build
        assert piped.decisions == report.decisions


def test_idle_and_backpressure_change_only_timing(digits):
    _verilator_or_skip()
    spec = matrix_spec("ell", "rate", "digits")
    samples = digit_samples(spec, digits, 3, offset=40)
    calm = cosimulate(spec, samples, lanes=4)
    busy = cosimulate(spec, samples, lanes=4, idle=0.5, stall=0.5, seed=7)
    assert calm.decisions == busy.decisions
    assert calm.step_cycles == busy.step_cycles  # the core's own cycles do not include waiting
    assert busy.run_s > 0


def test_parameters_other_than_the_specs_initial_ones_share_its_build(digits):
    """The build carries the spec's initial parameters whatever a test's are: every array of a
    DECOLLE net drawn anew (weights, biases, readout G, feedback H, over their formats' whole
    ranges) is written over the bus after reset, and learning equals golden with them."""
    _verilator_or_skip()
    from localsnn.sim.cosim import generate_verilog

    spec = matrix_spec("decolle", "direct", "digits")
    ls = spec.layers[0]
    params = Golden(spec).params.copy()
    lp = params.layers[0]
    rng = np.random.default_rng(3)
    for key, fmt in (("w", ls.weight), ("bias", ls.weight), ("clf_w", ls.classifier.weight), ("feedback", ls.classifier.feedback)):
        old = getattr(lp, key)
        new = rng.integers(fmt.min_int, fmt.max_int + 1, size=old.shape)
        new.flat[:2] = fmt.min_int, fmt.max_int  # both ends
        setattr(lp, key, new)
        assert (new != old).mean() > 0.9
    report = cosimulate(spec, digit_samples(spec, digits, 2, offset=4), lanes=4, params=params)
    assert report.samples == 2 and report.compared > 0
    assert (report.build_dir / "localsnn_top.v").read_text() == generate_verilog(spec, 4)[0]
    # a build for a short run (cosim.QUICK_BUILD_SAMPLES): the model's code at -O0; its files
    # include the runtime's precompiled headers, shared by every build (runner.PCH_HEADER), and
    # precompile none of their own
    log = (report.build_dir / "build.log").read_text()
    assert "Vtop__pch.h.fast" not in log
    assert re.search(r"^c\+\+ -O0 .*-include\S*/verilator-pch-[\w.-]+/verilated_common\.h\.fast -c Vtop\.cpp$", log, re.M)


def test_a_wrong_weight_is_reported_where_it_is(digits):
    """The harness can fail: a weight changed in the RTL alone is found and named."""
    _verilator_or_skip()
    spec = matrix_spec("ell", "direct", "digits")
    samples = digit_samples(spec, digits, 1)
    golden_params = Golden(spec).params
    rtl_params = golden_params.copy()
    rtl_params.layers[0].clf_w[5, 3] += 7
    with pytest.raises(Mismatch) as info:
        cosimulate(spec, samples, lanes=4, params=rtl_params, golden_params=golden_params)
    # hidden neuron 5 does not fire in this sample: the weight read-back after the sample finds it
    message = str(info.value)
    assert message.startswith("sample 0, after the last step: layer 0 classifier weight synapse (input, neuron) (5, 3): RTL ")
    rtl, gold = (int(v) for v in re.findall(r"RTL (-?\d+), golden (-?\d+)", message)[0])
    assert rtl - gold == 7
