"""The corner-case bugs found from outside the project, each kept as a test (the co-simulations
of those that involve the RTL are in tests/sim/test_cosim.py), and golden's integer types held
against exact Python integers over random specs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localsnn import spec as S
from localsnn.chip import chip_problems, check_chip
from localsnn.cli import main
from localsnn.errors import SpecError
from localsnn.golden import Golden
from localsnn.golden.params import init_params
from localsnn.sim.configs import corner_samples, corner_specs, random_pixels, random_spec

F = S.FixedFormat


def run_both(spec, samples):
    """Golden with its fast integer types and with exact Python integers, on the same samples
    with learning on: every spike, potential, readout, decision and weight must be equal."""
    fast, exact = Golden(spec), Golden(spec, exact=True)
    for x, y in samples:
        a, b = fast.run_sample(x, y), exact.run_sample(x, y)
        for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
            for name in ("spikes", "potential", "clf_spikes", "clf_potential", "readout"):
                va, vb = getattr(la, name), getattr(lb, name)
                assert (va is None) == (vb is None)
                if va is not None:
                    assert np.array_equal(va, vb), f"layer {i} {name}"
            assert la.decision == lb.decision
    for i, (pa, pb) in enumerate(zip(fast.params.layers, exact.params.layers)):
        for name, arr in pa.arrays().items():
            assert np.array_equal(arr.astype(object), pb.arrays()[name]), f"layer {i} {name}"
    X = np.stack([x for x, _ in samples])
    assert np.array_equal(fast.infer(X).astype(object), exact.infer(X))
    return fast, exact


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), chip=st.booleans())
def test_fast_integer_types_equal_exact_python_integers(seed, chip):
    """Every integer type golden picks is derived from the formats: over random specs (chip
    specs up to 32 bits, golden-only ones up to 64 as far as the spec's 62-bit work widths allow) the
    fast types give exactly what Python integers give."""
    spec, _ = random_spec(seed, chip=chip)
    run_both(spec, random_pixels(spec, 2, seed))


def test_exact_mode_holds_python_integers():
    """The reference really is Python integers (object arrays), not a copy of the fast path."""
    spec = corner_specs()["fell-theta"]
    g = Golden(spec, exact=True)
    assert g.params.layers[0].w.dtype == object
    g.run_sample(*corner_samples(spec)[0])
    assert isinstance(g.params.layers[0].w[0, 0], int)


def test_fell_trace_product_sized_by_the_threshold():
    """Bug 3: c = D(1 - theta lut) reaches about theta * lut_max (here 32 * 1.0), so e * c
    needs more than the trace format's bits; golden once took int32 and wrapped."""
    spec = corner_specs()["fell-theta"]
    fast, _ = run_both(spec, corner_samples(spec))
    L = fast.layers[0]
    bound = spec.fell_factor_bound(spec.layers[0].neuron)
    assert bound > 30 << spec.learning.trace.frac  # theta lut_max = 32: far above 1
    e_bits = spec.learning.trace.width + bound.bit_length() + 2
    assert np.dtype(L.trace_dtypes[0]).itemsize * 8 >= e_bits


def test_stochastic_update_shift_of_32_runs():
    """Bug 4: the default formats at lr_shift 24, the top of their range, give an update shift
    of 32 with a 32-bit random addend (golden once added it to an int32 array)."""
    base = S.load("digits")
    spec = dataclasses.replace(base, learning=dataclasses.replace(base.learning, lr_shift=base.lr_shift_range()[1]), inputs=8, layers=(dataclasses.replace(base.layers[0], size=5),))
    assert max(spec.update_shifts().values()) == 32 and spec.lfsr.width == 32
    run_both(spec, random_pixels(spec, 2, 0))


def test_initial_weights_fit_their_format():
    """Bug 5: the fan-in rule's bound is clipped to the largest value (not 2**(w-1)); an
    explicit scale beyond the format is refused, naming the largest weight."""
    spec = S.NetworkSpec(name="x", inputs=1, classes=2, timesteps=1, layers=(S.LayerSpec(size=64, weight=F(4, 3), accumulator=12, init=S.InitSpec(gain=4.0)),), learning=S.LearningSpec(rule="none"))
    assert spec.layers[0].init.bound(1, spec.layers[0].weight) == 7
    w = init_params(spec).layers[0].w
    assert w.max() <= 7 and w.min() >= -7 and w.max() == 7
    with pytest.raises(SpecError, match=r"^layers\[0\]\.init\.scale: 1\.0 is more than the largest s4\.3 weight \(0\.875\)"):
        S.loads(S.dumps(spec).replace("scale = 0.0", "scale = 1.0", 1))
    with pytest.raises(SpecError, match=r"^scale: -0.5 is negative; allowed: 0 \(the fan-in rule"):
        S.InitSpec(scale=-0.5)


@pytest.mark.parametrize("width", [8, 12])
def test_random_readouts_from_narrow_lfsrs(width):
    """Bug 6: DECOLLE's readout and feedback from an LFSR narrower than 16 bits."""
    spec = dataclasses.replace(corner_specs()["lfsr8-decolle"], lfsr=S.LFSRSpec(width=width))
    p = init_params(spec)
    assert p.layers[0].feedback.shape == (3, 3) and np.any(p.layers[0].clf_w)
    # H is sign-concordant with G
    assert np.all(np.sign(p.layers[0].feedback) * np.sign(p.layers[0].clf_w) >= 0)
    run_both(spec, corner_samples(spec))


def test_lfsr_too_narrow_for_stochastic_rounding_names_the_lfsr():
    base = corner_specs()["lfsr8-decolle"]
    layer = dataclasses.replace(base.layers[0], weight=F(16, 12, rounding="stochastic"))
    with pytest.raises(SpecError, match=r"^lfsr\.width: 8 is too narrow for stochastic rounding: with layers\[0\]\.weight\.rounding = 'stochastic'.*allowed: lfsr\.width 16, 20, 24, 31, 32"):
        dataclasses.replace(base, layers=(layer,))


@pytest.mark.parametrize("model, kind, message", [
    ("lif", "random", "classifier.kind: 'random': a layer of 'lif' neurons has a 'spiking' classifier"),
    ("decolle", "spiking", "classifier.kind: 'spiking': a layer of 'decolle' neurons has a 'random' readout"),
])
def test_pairings_no_engine_implements_are_refused(model, kind, message):
    """Bug 7: under rule none too, LIF layers report to spiking classifiers, DECOLLE layers to
    random readouts."""
    text = S.dumps(S.NetworkSpec(name="x", inputs=2, layers=(S.LayerSpec(size=2),), learning=S.LearningSpec(rule="none")))
    if model == "decolle":
        text = text.replace('model = "lif"\ntau = 1.0\nthreshold = 1.0', 'model = "decolle"\ntau = 1.0\nthreshold = 1.0', 1)
    text = text.replace('kind = "spiking"', f'kind = "{kind}"')
    with pytest.raises(SpecError) as info:
        S.loads(text)
    assert str(info.value) == "layers[0]." + message + (" (a 'random' readout goes with 'decolle' neurons)" if model == "lif" else " (a 'spiking' classifier goes with 'lif' neurons)")


def _golden_only():
    wide = S.NetworkSpec(name="wide", inputs=4, classes=2, timesteps=2, layers=(S.LayerSpec(size=3, weight=F(36, 30), accumulator=52),), learning=S.LearningSpec(rule="none"))
    acc = S.NetworkSpec(name="acc", inputs=4, classes=2, timesteps=4, layers=(S.LayerSpec(size=3),), learning=S.LearningSpec(rule="ell", accumulate=2))
    return wide, acc


def test_what_the_chip_does_not_implement_is_named():
    """Bugs 8 and 9: formats wider than the 32-bit bus, and accumulate > 1, are valid for
    golden but refused for the chip, naming the field and the reason."""
    wide, acc = _golden_only()
    assert [e.field for e in chip_problems(wide)] == ["layers[0].weight"]
    assert "36 bits is wider than the chip's 32-bit register bus" in str(chip_problems(wide)[0])
    assert [e.field for e in chip_problems(acc)] == ["learning.accumulate"]
    for name in ("digits", "digits-fell", "digits-decolle", "mnist", "mnist-8bit", "mnist-fell"):
        assert chip_problems(S.load(name)) == []
    run_both(wide, random_pixels(wide, 2, 0))  # golden takes them
    run_both(acc, random_pixels(acc, 2, 0))


@pytest.mark.parametrize("command", ["generate", "cosim", "synth"])
def test_chip_commands_refuse_golden_only_specs_in_one_line(command, tmp_path, capsys, monkeypatch):
    """No traceback and no Verilator build: the refusal comes first."""
    import localsnn.sim.runner as runner

    monkeypatch.setattr(runner, "run_cocotb", lambda *a, **k: pytest.fail("built before checking the spec"))
    for spec in _golden_only():
        path = tmp_path / f"{spec.name}.toml"
        S.save(spec, path)
        args = {"generate": ["generate", "--config", str(path), "-o", str(tmp_path / "out")],
                "cosim": ["cosim", "--config", str(path), "--dataset", "digits", "--samples", "1"],
                "synth": ["synth", "--config", str(path), "--board", "icebreaker", "--out", str(tmp_path / "synth")]}[command]
        if command == "cosim":
            spec = dataclasses.replace(spec, inputs=64, classes=10)
            S.save(spec, path)
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert err.startswith("localsnn: error: " + ("layers[0].weight: 36 bits is wider" if spec.name == "wide" else "learning.accumulate: 2: the chip applies"))


def test_spec_check_says_what_the_chip_does_not_implement(tmp_path, capsys):
    wide, _ = _golden_only()
    path = tmp_path / "wide.toml"
    S.save(wide, path)
    assert main(["spec", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "valid spec (wide) for golden and the float model, but the chip (RTL) does not implement it" in out
    assert "  layers[0].weight: 36 bits is wider than the chip's 32-bit register bus" in out
    assert main(["spec", "check", "digits"]) == 0
    assert "the chip (RTL) all implement it" in capsys.readouterr().out


def test_cosim_checks_golden_parameters_before_building(monkeypatch):
    import localsnn.sim.runner as runner
    from localsnn.errors import WeightsError
    from localsnn.sim.cosim import cosimulate

    monkeypatch.setattr(runner, "run_cocotb", lambda *a, **k: pytest.fail("built before checking the parameters"))
    spec = corner_specs()["int-pixels"]
    bad = init_params(spec)
    bad.layers[0].w[0, 0] = 1 << 20
    with pytest.raises(WeightsError, match="golden's parameters, layer 0 w: values from"):
        cosimulate(spec, corner_samples(spec), lanes=1, golden_params=bad)
    with pytest.raises(WeightsError, match="the RTL's parameters, layer 0 w"):
        cosimulate(spec, corner_samples(spec), lanes=1, params=bad)


def test_every_work_width_the_spec_accepts_fits_golden():
    """The spec refuses what golden cannot compute in 64 bits, naming the field: a potential
    with more fractional bits than the weights shifts the 63-bit sum left."""
    with pytest.raises(SpecError, match=r"^layers\[0\]\.accumulator: too wide: the synaptic current"):
        S.NetworkSpec(name="x", inputs=1, classes=2, timesteps=1, layers=(S.LayerSpec(size=1, weight=F(48, 0), accumulator=60, neuron=S.NeuronSpec(potential=F(16, 14))),), learning=S.LearningSpec(rule="none"))


def test_random_specs_reach_the_corners():
    """The generator's draws cover the regions the bugs lived in (its docstring lists them)."""
    specs = [random_spec(seed) for seed in range(300)]
    seen = {
        "direct, integer pixels": any(s.encoding.kind == "direct" and s.encoding.format.frac == 0 for s, _ in specs),
        "direct, pixels with integer bits": any(s.encoding.kind == "direct" and 0 < s.encoding.format.frac < s.encoding.format.width for s, _ in specs),
        "narrow classifier weights at shift 0": any(s.learning.rule == "ell" and s.layers[0].classifier.weight.width <= 6 and min(s.update_shifts().values()) == 0 for s, _ in specs),
        "FELL, theta >= 32": any(s.learning.rule == "fell" and s.layers[0].neuron.threshold >= 32 for s, _ in specs),
        "lr_shift at the bottom": any(s.learning.rule != "none" and s.learning.lr_shift == s.lr_shift_range()[0] for s, _ in specs),
        "lr_shift at the top": any(s.learning.rule != "none" and s.learning.lr_shift == s.lr_shift_range()[1] for s, _ in specs),
        "many classes, few neurons": any(s.classes >= 30 and min(l.size for l in s.layers) <= 2 for s, _ in specs),
        "32-bit formats": any(s.layers[0].weight.width == 32 for s, _ in specs),
        "one time step": any(s.timesteps == 1 for s, _ in specs),
        "events as spikes": any(s.encoding.kind == "events" and s.encoding.format.width == 1 for s, _ in specs),
        "events as counts of 8 bits": any(s.encoding.kind == "events" and s.encoding.format.width == 8 for s, _ in specs),
        "events into DECOLLE": any(s.encoding.kind == "events" and s.layers[0].neuron.model == "decolle" for s, _ in specs),
    }
    widths = {s.lfsr.width for s, _ in specs if s.learning.rule == "decolle"}
    seen["every LFSR width with random readouts"] = widths == set(S.LFSR_WIDTHS)
    assert all(seen.values()), [k for k, v in seen.items() if not v]
    for s, lanes in specs:
        check_chip(s, lanes)


def test_the_rtl_refuses_parameters_outside_their_formats():
    """Bug 5's other half: generate once wrote +8 as -8 into an s4.3 memory image."""
    from localsnn.errors import WeightsError
    from localsnn.rtl.top import Network

    spec = S.NetworkSpec(name="x", inputs=1, classes=2, timesteps=1, layers=(S.LayerSpec(size=2, weight=F(4, 3), accumulator=12),), learning=S.LearningSpec(rule="none"))
    bad = init_params(spec)
    bad.layers[0].w[0, 1] = 8
    with pytest.raises(WeightsError, match=r"layer 0 w: values from .* to 8 do not fit s4\.3 \[-8, 7\]"):
        Network(spec, lanes=1, params=bad)
