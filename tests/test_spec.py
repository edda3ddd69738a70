"""The spec: TOML round trips, and every invalid value refused with a message that names the
field, the value and what is allowed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localsnn import spec as S
from localsnn.errors import SpecError

F = S.FixedFormat


def base_toml(**over: str) -> str:
    """A small valid spec as TOML text; keyword arguments replace whole sections."""
    sections = {
        "top": 'name = "t"\ninputs = 16\nclasses = 4\ntimesteps = 5\n',
        "encoding": '[encoding]\nkind = "direct"\nformat = { width = 8, frac = 8, signed = false }\n',
        "learning": '[learning]\nrule = "ell"\nlr_shift = 6\n',
        "layer": "[[layers]]\nsize = 8\naccumulator = 32\n",
        "classifier": "[layers.classifier]\nkind = \"spiking\"\naccumulator = 24\n",
    }
    sections.update(over)
    return "\n".join(sections.values())


def test_the_base_spec_is_valid():
    s = S.loads(base_toml())
    assert s.inputs == 16 and s.layers[0].size == 8 and s.learning.rule == "ell"


@pytest.mark.parametrize("name", S.builtin_specs())
def test_shipped_specs_round_trip(name):
    s = S.load(name)
    text = S.dumps(s)
    assert S.loads(text) == s
    assert S.dumps(S.loads(text)) == text


def test_required_shipped_specs_exist():
    names = S.builtin_specs()
    assert {"digits", "mnist"} <= set(names)
    mnist = S.load("mnist")
    assert (mnist.inputs, mnist.layers[0].size, mnist.classes, mnist.timesteps) == (784, 800, 10, 10)
    assert mnist.layers[0].neuron.tau == 1.0 and mnist.layers[0].neuron.threshold == 1.0
    digits = S.load("digits")
    assert (digits.inputs, digits.layers[0].size, digits.classes) == (64, 64, 10)
    # the event specs: the channels their dataset gives at their polarity and downsampling
    from localsnn import events as E

    for name, dataset, classes in (("nmnist", "nmnist", 10), ("nmnist-pooled", "nmnist", 10), ("shd", "shd", 20)):
        ev = S.load(name)
        enc = ev.encoding
        assert enc.kind == "events" and ev.sample_shape == (ev.timesteps, ev.inputs)
        assert (ev.inputs, ev.classes) == (E.channels(dataset, enc.polarity, enc.downsample), classes)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 300),
    t=st.integers(1, 40),
    lr=st.integers(5, 12),
    wfrac=st.integers(8, 12),
    tau=st.floats(0.5, 50),
    rule=st.sampled_from(["ell", "fell", "none"]),
    enc=st.sampled_from(["direct", "rate", "latency"]),
)
def test_generated_specs_round_trip(size, t, lr, wfrac, tau, rule, enc, tmp_path_factory):
    neuron = S.NeuronSpec(tau=tau)
    layer = S.LayerSpec(size=size, weight=F(16, wfrac, rounding="stochastic"), accumulator=40, neuron=neuron, classifier=S.ClassifierSpec(accumulator=40, neuron=neuron))
    s = S.NetworkSpec(name="g", inputs=20, layers=(layer, layer), timesteps=t, encoding=S.EncodingSpec(kind=enc), learning=S.LearningSpec(rule=rule, lr_shift=lr))
    path = tmp_path_factory.mktemp("rt") / "s.toml"
    S.save(s, path)
    assert S.load(path) == s


# -- bad values, built in Python ---------------------------------------------------------------

BAD_VALUES = [
    (lambda: S.LayerSpec(size=0), "size: 0 is out of range; allowed: an integer from 1 to"),
    (lambda: S.LayerSpec(size=-3), "size: -3 is out of range"),
    (lambda: S.NetworkSpec(name="x", inputs=0, layers=(S.LayerSpec(size=4),)), "inputs: 0 is out of range; allowed: an integer from 1"),
    (lambda: S.NetworkSpec(name="x", inputs=4, layers=(S.LayerSpec(size=4),), timesteps=0), "timesteps: 0 is out of range"),
    (lambda: S.NetworkSpec(name="x", inputs=4, layers=(S.LayerSpec(size=4),), classes=1), "classes: 1 is out of range; allowed: an integer from 2"),
    (lambda: S.NetworkSpec(name="x", inputs=4, layers=()), "layers: a network needs at least one hidden layer"),
    (lambda: F(8, 9), "frac: 9 fractional bits is more than width = 8; fractional bits must be from 0 to 8"),
    (lambda: F(8, -1), "frac: -1 is negative"),
    (lambda: F(0, 0), "width: 0 is out of range; allowed: an integer from 1 to 64"),
    (lambda: F(16, 8, rounding="truncate"), "rounding: unknown value 'truncate'; allowed: 'floor', 'nearest', 'stochastic'"),
    (lambda: F(16, 8, overflow="clamp"), "overflow: unknown value 'clamp'; allowed: 'saturate', 'wrap'"),
    (lambda: S.NeuronSpec(threshold=0.3), "threshold: 0.3 is not representable in s16.8: it is not a multiple of 2**-8; nearest representable value: 0.30078125"),
    (lambda: S.NeuronSpec(threshold=200.0), "threshold: 200.0 is outside the range of s16.8"),
    (lambda: S.NeuronSpec(threshold=-1.0), "threshold: -1.0 must be positive for a LIF neuron"),
    (lambda: S.NeuronSpec(tau=0.05), "tau: tau = 0.05 gives exp(-1/tau) = 2.06e-09, which rounds to 0 in u8.8; not representable"),
    (lambda: S.NeuronSpec(tau=1000.0), "tau: tau = 1000.0 gives exp(-1/tau) = 0.999000, which rounds to 256/2**8 and does not fit u8.8"),
    (lambda: S.NeuronSpec(tau=-2.0), "tau: -2.0 must be a positive number"),
    (lambda: S.NeuronSpec(model="izhikevich"), "model: unknown value 'izhikevich'; allowed: 'lif', 'decolle'"),
    (lambda: S.NeuronSpec(leak="linear"), "leak: unknown value 'linear'; allowed: 'multiply', 'shift'"),
    (lambda: S.NeuronSpec(potential=F(16, 8, signed=False)), "potential: u16.8 is unsigned; membrane potentials need a signed format"),
    (lambda: S.NeuronSpec(potential=F(16, 8, rounding="stochastic")), "potential.rounding: 'stochastic' is only allowed for weights"),
    (lambda: S.EncodingSpec(kind="phase"), "kind: unknown value 'phase'; allowed: 'direct', 'rate', 'latency'"),
    (lambda: S.SurrogateSpec(kind="sigmoid"), "kind: unknown value 'sigmoid'; allowed: 'exp', 'rect', 'boxcar'"),
    (lambda: S.LearningSpec(rule="stdp"), "rule: unknown value 'stdp'; allowed: 'none', 'ell', 'fell', 'decolle'"),
    (lambda: S.LearningSpec(lr_shift=-1), "lr_shift: -1 is out of range; allowed: an integer from 0 to 62"),
    (lambda: S.LearningSpec(error=F(16, 12, rounding="stochastic")), "error.rounding: 'stochastic' is not allowed for the local error"),
    (lambda: S.ClassifierSpec(kind="softmax"), "kind: unknown value 'softmax'; allowed: 'spiking', 'random'"),
    (lambda: S.LayerSpec(size=4, weight=F(8, 4, signed=False)), "weight: u8.4 is unsigned; weights need a signed format"),
    (lambda: S.LFSRSpec(width=17), "width: 17 has no maximal-length tap table; allowed: 8, 12, 16, 20, 24, 31, 32"),
    (lambda: S.LFSRSpec(seed=0), "seed: 0 is out of range"),
    (
        lambda: S.NetworkSpec(name="x", inputs=784, layers=(S.LayerSpec(size=8, accumulator=24),)),
        "layers[0].accumulator: 24 bits is too narrow for the worst-case sum of the layer (784 inputs x |w| <= 32768 (s16.12) x x <= 255 = 6550978560), which needs 34 bits; allowed: 34 to 63",
    ),
    (
        lambda: S.NetworkSpec(name="x", inputs=4, layers=(S.LayerSpec(size=800, classifier=S.ClassifierSpec(accumulator=20)),)),
        "layers[0].classifier.accumulator: 20 bits is too narrow for the worst-case sum of the classifier (800 spikes x |w| <= 32768 = 26214400), which needs 26 bits",
    ),
    (
        lambda: S.NetworkSpec(name="x", inputs=4, layers=(S.LayerSpec(size=4),), learning=S.LearningSpec(lr_shift=2)),
        "learning.lr_shift: 2 is out of range for these formats; allowed: 5 to 24",
    ),
    (
        lambda: S.NetworkSpec(name="x", inputs=4, layers=(S.LayerSpec(size=4),), learning=S.LearningSpec(lr_shift=30)),
        "learning.lr_shift: 30 is out of range for these formats; allowed: 5 to 24",
    ),
    (
        lambda: S.NetworkSpec(name="x", inputs=4, layers=(S.LayerSpec(size=4),), learning=S.LearningSpec(rule="decolle", lr_shift=6)),
        "layers[0].neuron.model: 'lif': learning.rule 'decolle' needs 'decolle' neurons",
    ),
    (
        lambda: S.NetworkSpec(name="x", inputs=4, timesteps=5, layers=(S.LayerSpec(size=4),), learning=S.LearningSpec(accumulate=6)),
        "learning.accumulate: 6 is more than timesteps = 5; allowed: 1 to 5",
    ),
    (
        lambda: S.NetworkSpec(name="x", inputs=4, layers=(S.LayerSpec(size=4),), learning=S.LearningSpec(surrogate=S.SurrogateSpec(step_frac=10))),
        "learning.surrogate.step_frac: 10 is finer than layers[0].neuron.potential (s16.8, 8 fractional bits); allowed: 0 to 8",
    ),
]


@pytest.mark.parametrize("build, message", BAD_VALUES, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_VALUES)])
def test_bad_values_are_refused_with_a_clear_message(build, message):
    with pytest.raises(SpecError) as info:
        build()
    assert message in str(info.value)


def test_decay_shift_form():
    n = S.NeuronSpec(tau=16.0, leak="shift")
    assert n.alpha.mode == "shift" and n.alpha.shift == 4 and n.alpha.value == 1 - 1 / 16


# -- bad TOML --------------------------------------------------------------------------------

BAD_TOML = [
    (base_toml(top='name = "t"\ninputs = 16\nclasses = 4\ntimesteps = 5\ntimestep = 3\n'), "timestep: unknown key (did you mean 'timesteps'?); allowed keys: name, inputs, layers"),
    (base_toml(layer="[[layers]]\nsize = 8\naccumulator = 32\nsise = 3\n"), "layers[0].sise: unknown key (did you mean 'size'?)"),
    (base_toml(layer='[[layers]]\nsize = "8"\naccumulator = 32\n'), "layers[0].size: expected an integer, got '8' (str)"),
    (base_toml(layer="[[layers]]\nsize = 8.0\naccumulator = 32\n"), "layers[0].size: expected an integer, got 8.0 (float)"),
    (base_toml(layer="[[layers]]\nsize = true\naccumulator = 32\n"), "layers[0].size: expected an integer, got True (bool)"),
    (base_toml(layer="[[layers]]\nsize = 8\naccumulator = 32\nlearn = 1\n"), "layers[0].learn: expected true or false, got 1 (int)"),
    (base_toml(learning='[learning]\nrule = 5\n'), "learning.rule: expected a string, got 5 (int)"),
    (base_toml(learning='[learning]\nrule = "ell"\nlr_shift = 6\nerror = 16\n'), "learning.error: expected a table, got 16 (int)"),
    (base_toml(learning='[learning]\nrule = "elm"\n'), "learning.rule: unknown value 'elm'; allowed: 'none', 'ell', 'fell', 'decolle'"),
    (base_toml(encoding='[encoding]\nkind = "rate"\nformat = { width = 8, frac = 12, signed = false }\n'), "encoding.format.frac: 12 fractional bits is more than width = 8"),
    (base_toml(layer="[[layers]]\nsize = 0\naccumulator = 32\n"), "layers[0].size: 0 is out of range"),
    (base_toml(layer="[[layers]]\nsize = 8\naccumulator = 32\nneuron = { threshold = 0.1 }\n"), "layers[0].neuron.threshold: 0.1 is not representable in s16.8"),
    (base_toml(layer="[[layers]]\nsize = 8\naccumulator = 12\n"), "layers[0].accumulator: 12 bits is too narrow for the worst-case sum of the layer"),
    (base_toml(top='name = "t"\nclasses = 4\n'), "missing required key(s): inputs"),
    (base_toml(layer="[layers]\nsize = 8\n", classifier=""), "layers: expected an array of tables"),
    ("name = \n", "is not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD_TOML, ids=[m.split(":")[0][:30] + str(i) for i, (_, m) in enumerate(BAD_TOML)])
def test_bad_toml_is_refused_with_a_clear_message(text, message):
    with pytest.raises(SpecError) as info:
        S.loads(text)
    assert message in str(info.value)


def test_a_file_error_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(base_toml(layer="[[layers]]\nsize = -1\naccumulator = 32\n"))
    with pytest.raises(SpecError, match=r"layers\[0\].size: -1 is out of range.*\(in .*bad.toml\)"):
        S.load(p)
    with pytest.raises(SpecError, match="no spec file 'nope.toml'; give a path to a TOML file or one of the shipped specs: digits"):
        S.load("nope.toml")


def test_the_surrogate_table_is_computed_once_from_the_spec():
    sur = S.SurrogateSpec(kind="exp", step_frac=2, size=8, format=F(8, 7, signed=False, rounding="nearest"))
    assert sur.table == tuple(min(int(2.718281828459045 ** (-k / 4) * 128 + 0.5), 255) for k in range(8))
    box = S.SurrogateSpec(kind="boxcar", width=1.0, step_frac=2, size=8)
    assert box.table == (128, 128, 128, 0, 0, 0, 0, 0)  # |x| <= 0.5
    rect = S.SurrogateSpec(kind="rect", width=0.5, step_frac=2, size=4)
    assert rect.table == (255, 0, 0, 0)  # 1/a = 2.0 saturates u8.7 at 255/128


def test_specs_are_frozen():
    s = S.load("digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.inputs = 3  # type: ignore[misc]
