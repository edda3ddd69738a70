"""The golden model as a whole: batched == per-sample, determinism, encodings, counters,
accumulation, the LFSR draw schedule, parameters files."""

from __future__ import annotations

import numpy as np
import pytest

from localsnn import spec as S
from localsnn.data import load
from localsnn.errors import WeightsError
from localsnn.golden import Golden, load_params, save_params
from localsnn.golden.encode import latency_times, quantize_pixels
from localsnn.golden.lfsr import LFSR

F = S.FixedFormat


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def two_layer(rule: str, enc: str, *, model: str = "lif", accumulate: int = 1, rounding: str = "stochastic", sizes=(24, 16), timesteps: int = 8) -> S.NetworkSpec:
    """A small two-hidden-layer net for the 8x8 digits with any rule and encoding."""
    if model == "decolle":
        neuron = S.NeuronSpec(model="decolle", tau=2.0, tau_syn=1.0, tau_ref=2.0, threshold=0.0, rho=1.0, trace=F(15, 14, signed=False))
        clf = S.ClassifierSpec(kind="random", weight=F(8, 8), accumulator=16, init=S.InitSpec(scale=0.2))
        surrogate = S.SurrogateSpec(kind="boxcar", size=16)
    else:
        neuron = S.NeuronSpec()
        clf = S.ClassifierSpec(accumulator=28, init=S.InitSpec(scale=0.4), weight=F(16, 12, rounding=rounding))
        surrogate = S.SurrogateSpec()
    layers = tuple(
        S.LayerSpec(size=n, neuron=neuron, weight=F(16, 12, rounding=rounding), accumulator=40, init=S.InitSpec(scale=0.5), classifier=clf)
        for n in sizes
    )
    lr = 6 if rule != "fell" else 10
    return S.NetworkSpec(
        name=f"{rule}-{enc}",
        inputs=64,
        layers=layers,
        timesteps=timesteps,
        encoding=S.EncodingSpec(kind=enc),
        learning=S.LearningSpec(rule=rule, lr_shift=lr, accumulate=accumulate, surrogate=surrogate, error=F(16, 12, rounding="nearest"), trace=F(16, 12, rounding="nearest")),
    )


CASES = [(rule, enc, "decolle" if rule == "decolle" else "lif") for rule in ("none", "ell", "fell", "decolle") for enc in ("direct", "rate", "latency")]


@pytest.mark.parametrize("rule, enc, model", CASES)
def test_batched_inference_equals_the_per_sample_path(digits, rule, enc, model):
    spec = two_layer(rule, enc, model=model)
    g = Golden(spec)
    X = g.quantize(digits.x_train[:40], digits.max_value)
    # learn a little first so the weights are not the initial ones
    for i in range(20):
        g.run_sample(X[i], int(digits.y_train[i]))
    ref = Golden(spec, g.params.copy())
    ref.set_stream_states(g.stream_states())
    per_sample = np.stack([np.stack([r.counts for r in ref.run_sample(x, learn=False).layers]) for x in X], axis=1)
    batched = g.infer(X, batch=16)
    np.testing.assert_array_equal(batched, per_sample)
    assert g.stream_states() == ref.stream_states()  # rate coding drew the same words
    assert per_sample.any()


@pytest.mark.parametrize("rule, model", [("ell", "lif"), ("fell", "lif"), ("decolle", "decolle")])
def test_same_seed_same_result_bit_for_bit(digits, rule, model):
    spec = two_layer(rule, "rate", model=model)
    runs = []
    for _ in range(2):
        g = Golden(spec)
        X = g.quantize(digits.x_train[:25], digits.max_value)
        recs = [g.run_sample(x, int(y)) for x, y in zip(X, digits.y_train[:25])]
        runs.append((g, recs))
    (g1, r1), (g2, r2) = runs
    assert g1.params.equal(g2.params)
    assert g1.counters == g2.counters
    for a, b in zip(r1, r2):
        for la, lb in zip(a.layers, b.layers):
            np.testing.assert_array_equal(la.potential, lb.potential)
            np.testing.assert_array_equal(la.spikes, lb.spikes)
    # and a different seed gives a different run
    other = Golden(S.NetworkSpec(**{**spec.__dict__, "lfsr": S.LFSRSpec(seed=2)}))
    assert not other.params.equal(Golden(spec).params)


def test_learning_changes_weights_only_when_on(digits):
    spec = two_layer("ell", "direct")
    g = Golden(spec)
    before = g.params.copy()
    x = g.quantize(digits.x_train[0], digits.max_value)
    g.run_sample(x, int(digits.y_train[0]), learn=False)
    assert g.params.equal(before)
    g.run_sample(x, None)  # no label: nothing to learn from
    assert g.params.equal(before)
    g.run_sample(x, int(digits.y_train[0]), learn=[False, True])
    assert np.array_equal(g.params.layers[0].w, before.layers[0].w)
    assert not np.array_equal(g.params.layers[1].w, before.layers[1].w)


def test_stochastic_rounding_draws_a_fixed_number_of_words(digits):
    """One draw per neuron of every learning block per applied update, whatever the data."""
    spec = two_layer("ell", "direct")
    g = Golden(spec)
    x = g.quantize(digits.x_train[3], digits.max_value)
    states = g.stream_states()
    g.run_sample(x, 3)
    for i, layer in enumerate(spec.layers):
        for name, n in ((f"round:{i}", layer.size), (f"round:{i}.clf", spec.classes)):
            ref = LFSR(spec.lfsr.width, states[name])
            ref.draws(n * spec.timesteps)
            assert g.streams[name].state == ref.state, name


def test_accumulated_updates_apply_every_k_steps(digits):
    spec = two_layer("ell", "direct", accumulate=4, timesteps=8, rounding="floor")
    g = Golden(spec)
    x = g.quantize(digits.x_train[5], digits.max_value)
    w0 = g.params.copy()
    rec = g.run_sample(x, 5, record_weights=True)
    changes = [not rec.weights[t].equal(rec.weights[t - 1] if t else w0) for t in range(8)]
    assert changes[3] and changes[7]
    assert not any(changes[t] for t in (0, 1, 2, 4, 5, 6))


def test_overflow_is_counted(digits):
    narrow = S.NeuronSpec(potential=F(6, 4))  # range [-2, 2): strong input saturates it
    layer = S.LayerSpec(size=16, neuron=narrow, accumulator=40, init=S.InitSpec(scale=1.0), classifier=S.ClassifierSpec(accumulator=28, neuron=narrow))
    spec = S.NetworkSpec(name="ovf", inputs=64, layers=(layer,), learning=S.LearningSpec(surrogate=S.SurrogateSpec(step_frac=4)))
    g = Golden(spec)
    x = g.quantize(digits.x_train[0], digits.max_value)
    rec = g.run_sample(x, 0)
    assert rec.counters[0]["overflow_potential"] > 0
    assert g.counters[0]["overflow_potential"] == rec.counters[0]["overflow_potential"]
    assert rec.layers[0].potential.max() <= narrow.potential.max_int


def test_counters_count_events(digits):
    spec = two_layer("ell", "rate")
    g = Golden(spec)
    x = g.quantize(digits.x_train[1], digits.max_value)
    rec = g.run_sample(x, 1)
    c0, c1 = rec.counters
    assert c0["spikes"] == int(rec.layers[0].spikes.sum())
    assert c1["input_events"] == c0["spikes"]  # layer 1's input events are layer 0's spikes
    assert c0["synaptic_ops"] == c0["input_events"] * spec.layers[0].size
    assert c0["clf_spikes"] == int(rec.layers[0].clf_spikes.sum())


def test_rate_code_fires_with_the_pixel_probability():
    fmt = F(8, 8, signed=False, rounding="nearest")
    spec = S.NetworkSpec(name="r", inputs=4, timesteps=2000, encoding=S.EncodingSpec(kind="rate", format=fmt), layers=(S.LayerSpec(size=2, accumulator=30),), learning=S.LearningSpec(rule="none"))
    g = Golden(spec)
    x = np.array([0, 64, 128, 255])
    spikes = g.encoder.sample_inputs(x)
    rate = spikes.mean(axis=0)
    assert rate[0] == 0
    np.testing.assert_allclose(rate[1:], x[1:] / 256, atol=0.035)


@pytest.mark.parametrize("pixel", range(0, 256, 5))
def test_latency_code_is_eq_17(pixel):
    T = 10
    intensity = pixel / 256
    expected = int(np.floor(T - T * intensity + 0.5))  # round(), ties up
    assert latency_times(np.array([pixel]), T, 8)[0] == expected


def test_pixels_quantize_by_the_format():
    fmt = F(8, 8, signed=False, rounding="nearest")
    assert quantize_pixels(np.array([0, 8, 16]), 16, fmt).tolist() == [0, 128, 255]
    with pytest.raises(Exception, match="pixels must be integers 0..16"):
        quantize_pixels(np.array([17]), 16, fmt)


def test_params_save_load_and_mismatches(tmp_path):
    spec = two_layer("decolle", "direct", model="decolle")
    g = Golden(spec)
    path = tmp_path / "w.npz"
    save_params(g.params, path, spec)
    assert load_params(path, spec).equal(g.params)
    with pytest.raises(WeightsError, match=r"layer 0: arrays \['bias', 'clf_w', 'feedback', 'w'\] \(by the spec stored in the file, 'decolle-direct'\); the spec it is loaded with \('ell-direct'\) needs \['clf_w', 'w'\]"):
        load_params(path, two_layer("ell", "direct"))
    ell = two_layer("ell", "direct")
    save_params(Golden(ell).params, tmp_path / "ell.npz", ell)
    with pytest.raises(WeightsError, match=r"layer 1 w: shape \(24, 16\) \(by the spec stored in the file, 'ell-direct'\); the spec it is loaded with \('ell-direct'\) needs \(24, 12\)"):
        load_params(tmp_path / "ell.npz", two_layer("ell", "direct", sizes=(24, 12)))
    with pytest.raises(WeightsError, match="holds 2 layers .*; the spec it is loaded with \\('ell-direct'\\) has 1"):
        load_params(tmp_path / "ell.npz", two_layer("ell", "direct", sizes=(24,)))
    with pytest.raises(WeightsError, match="no weights file"):
        load_params(tmp_path / "missing.npz", spec)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="bad.npz is not a weights file: not an .npz archive"):
        load_params(bad, spec)
    # the same shapes in another format: the integers would mean other numbers
    import dataclasses

    layer = ell.layers[0]
    other = dataclasses.replace(ell, layers=(dataclasses.replace(layer, weight=dataclasses.replace(layer.weight, frac=10)), *ell.layers[1:]))
    with pytest.raises(WeightsError, match=r"ell.npz, layer 0 w: written as s16.12 .* needs s16.10: load the weights with the spec they were written for"):
        load_params(tmp_path / "ell.npz", other)
    # a file that holds arrays but no spec: not written by localsnn
    np.savez(tmp_path / "bare.npz", **{"layer0.w": g.params.layers[0].w})
    with pytest.raises(WeightsError, match="holds no spec.toml"):
        load_params(tmp_path / "bare.npz", spec)
    big = g.params.copy()
    big.layers[0].w[0, 0] = 1 << 20
    save_params(big, tmp_path / "big.npz", spec)
    with pytest.raises(WeightsError, match="do not fit s16.12"):
        load_params(tmp_path / "big.npz", spec)


def test_decolle_feedback_is_sign_concordant():
    spec = two_layer("decolle", "direct", model="decolle")
    g = Golden(spec)
    G = g.params.layers[0].clf_w
    H = g.params.layers[0].feedback
    assert np.all((H == 0) | (np.sign(H) == np.sign(G)))
    assert np.count_nonzero(H) > 0.6 * H.size


def test_input_shape_and_label_are_checked():
    g = Golden(two_layer("ell", "direct"))
    with pytest.raises(ValueError, match="a sample has 64 inputs; got shape \\(63,\\)"):
        g.run_sample(np.zeros(63, dtype=int), 0)
    with pytest.raises(ValueError, match="label 12 is outside 0..9"):
        g.run_sample(np.zeros(64, dtype=int), 12)
