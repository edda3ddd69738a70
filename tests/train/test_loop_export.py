"""The float training loop, its encodings, checkpoints and resume, the export to golden, the CLI.

Everything runs on the CPU in seconds: the 8x8 digits, the real learners (ELL, DECOLLE).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from localsnn.golden import Golden, load_params
from localsnn.golden.encode import Encoder as GoldenEncoder
from localsnn.golden.encode import latency_times, quantize_pixels
from localsnn.golden.lfsr import LFSR
from localsnn.util import accuracy
from localsnn.train import export as X
from localsnn.train import loop, registry
from localsnn.train.encode import Encoder, latency_times_torch, quantize

from localsnn import spec as S
from localsnn.cli import main
from localsnn.data import load
from localsnn.errors import LocalsnnError, WeightsError
from localsnn.spec import EncodingSpec, FixedFormat


@pytest.fixture(scope="module")
def digits():
    return load("digits")


U88 = FixedFormat(8, 8, signed=False, rounding="nearest")


def enc(kind: str) -> EncodingSpec:
    return EncodingSpec(kind=kind, format=U88)


# -- encodings ---------------------------------------------------------------------------------


def test_quantize_is_goldens(digits):
    q = quantize(digits.x_test, digits.max_value, enc("direct"))
    assert q.dtype == torch.int32
    assert np.array_equal(q.numpy(), quantize_pixels(digits.x_test, digits.max_value, U88))


def test_direct_code_is_the_quantized_intensity_at_every_step():
    x = torch.tensor([[0, 1, 128, 255]], dtype=torch.int32)
    out = Encoder(enc("direct"), 3)(x)
    assert out.shape == (3, 1, 4) and out.dtype == torch.float32
    assert torch.equal(out, torch.tensor([0, 1 / 256, 0.5, 255 / 256]).expand(3, 1, 4))


def test_latency_code_is_ma_eq_17_as_golden_computes_it():
    T = 10
    x = np.arange(256)
    t_s = latency_times_torch(torch.from_numpy(x), T, 8).numpy()
    assert np.array_equal(t_s, latency_times(x, T, 8))
    # eq. 17: t_s = round(T - T*I), ties up; I = 1 fires at once, I = 0 never (t_s = T)
    for xi in (0, 1, 12, 13, 128, 255):
        assert t_s[xi] == math.floor(T - T * xi / 256 + 0.5)
    assert t_s[0] == T and t_s[255] == 0 and t_s[128] == 5
    # the spike trains equal golden's encoder, sample for sample
    xs = np.array([[0, 5, 64, 100, 128, 200, 255], [255, 13, 12, 0, 1, 2, 3]])
    ours = Encoder(enc("latency"), T)(torch.from_numpy(xs).to(torch.int32)).numpy()  # [T, B, n]
    golden = GoldenEncoder(enc("latency"), T, None).sample_inputs(xs)  # [B, T, n]
    assert np.array_equal(ours.transpose(1, 0, 2), golden)
    assert ours.sum(axis=0).max() == 1  # at most one spike per input


def test_events_are_the_bins_values_as_golden_takes_them():
    """``events``: the float input of step t is the bin's value (a count, or a spike at 1 bit),
    golden's own input moved to [T, B, n]; a sample of the wrong steps is refused."""
    from localsnn.errors import LocalsnnError
    from localsnn.golden.encode import event_values

    T = 4
    counts = np.random.default_rng(3).poisson(1.5, (2, T, 5))
    for width in (1, 2, 8):
        spec = EncodingSpec(kind="events", format=FixedFormat(width, 0, signed=False), window_us=1000)
        xs = event_values(counts, spec.format)
        assert xs.max() == min(counts.max(), (1 << width) - 1)
        ours = Encoder(spec, T)(torch.from_numpy(xs.astype(np.int32))).numpy()
        assert np.array_equal(ours.transpose(1, 0, 2), GoldenEncoder(spec, T, None).sample_inputs(xs))
    with pytest.raises(LocalsnnError, match=r"events: samples of shape \[B, 4, inputs\] expected, got \[2, 3, 5\]"):
        Encoder(spec, T)(torch.zeros(2, 3, 5, dtype=torch.int32))


def test_rate_code_fires_with_probability_I_like_goldens_lfsr_code():
    T = 4000
    x = torch.tensor([[0, 1, 32, 128, 200, 255]], dtype=torch.int32)
    g = torch.Generator().manual_seed(7)
    spikes = Encoder(enc("rate"), T)(x, g)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    p = x[0].double() / 256
    rate = spikes[:, 0].double().mean(dim=0)
    sigma = torch.sqrt(p * (1 - p) / T)
    assert torch.all((rate - p).abs() <= 4 * sigma + 1e-12), (rate, p)
    assert rate[0] == 0  # a black pixel never fires
    # golden's rate code (LFSR draws) has the same probability per input
    gold = GoldenEncoder(enc("rate"), T, LFSR.stream(32, 1, "encode")).sample_inputs(x.numpy()).mean(axis=1)[0]
    assert np.all(np.abs(gold - p.numpy()) <= 4 * sigma.numpy() + 1e-12)
    # seeded: the same generator seed gives the same spikes
    assert torch.equal(spikes, Encoder(enc("rate"), T)(x, torch.Generator().manual_seed(7)))


def test_overrides_give_a_valid_spec_for_the_latency_runs():
    s = loop.override_spec(S.load("mnist"), encoding="latency", tau=40.0, timesteps=12)
    assert s.encoding.kind == "latency" and s.timesteps == 12
    assert s.layers[0].neuron.tau == 40.0 and s.layers[0].classifier.neuron.tau == 40.0
    assert s.layers[0].neuron.alpha.multiplier == round(math.exp(-1 / 40) * 256)
    with pytest.raises(LocalsnnError, match="the overrides make the spec invalid: .*tau"):
        loop.override_spec(S.load("mnist"), tau=0.001)


# -- quantization ------------------------------------------------------------------------------


def test_quantize_rounds_as_the_format_says_and_counts_saturation():
    f = FixedFormat(8, 4, rounding="stochastic")
    ints, sat = X.quantize([0.03, 0.0313, -0.03125, 7.9, 8.0, -8.0, -9.5, 1.5], f)
    # 0.03*16 = 0.48 -> 0; 0.0313*16 = 0.5008 -> 1; -0.5 -> 0 (half up); 126.4 -> 126; 128 and 152 saturate
    assert ints.tolist() == [0, 1, 0, 126, 127, -128, -128, 24]
    assert sat == 2
    fl = FixedFormat(8, 4, rounding="floor")
    assert X.quantize([0.06, -0.01], fl)[0].tolist() == [0, -1]
    with pytest.raises(WeightsError, match="non-finite value"):
        X.quantize([0.0, float("nan")], f, "w")


def test_to_params_checks_the_arrays_against_the_spec():
    spec = S.load("digits")
    ok = [{"w": np.zeros((64, 64)), "clf_w": np.full((64, 10), 100.0)}]
    params, report = X.to_params(spec, ok)
    assert params.layers[0].clf_w.max() == (1 << 15) - 1
    assert [(r.name, r.saturated) for r in report] == [("w", 0), ("clf_w", 640)]
    with pytest.raises(WeightsError, match="layer 0 w: shape \\(64, 32\\); the spec 'digits-ell' needs \\(64, 64\\)"):
        X.to_params(spec, [{"w": np.zeros((64, 32)), "clf_w": np.zeros((64, 10))}])
    with pytest.raises(WeightsError, match="no 'clf_w' array"):
        X.to_params(spec, [{"w": np.zeros((64, 64))}])
    with pytest.raises(WeightsError, match="layer 0: arrays bias, feedback have no place in the spec 'digits-ell' .*another kind of network"):
        X.to_params(spec, [{**ok[0], "bias": np.zeros(64), "feedback": np.zeros((64, 10))}])
    with pytest.raises(WeightsError, match="2 hidden layer"):
        X.to_params(spec, ok * 2)


# -- the loop ----------------------------------------------------------------------------------


def test_registry_knows_every_rule_and_says_which_exist():
    assert set(registry.names()) == {"bptt", "ell", "bell", "fell", "fell-kp", "decolle", "tlbptt"}
    with pytest.raises(LocalsnnError, match="unknown rule 'elll'; allowed: bptt, ell, bell, fell, fell-kp, decolle, tlbptt"):
        registry.build("elll", S.load("digits"))
    with pytest.raises(LocalsnnError, match="rule 'decolle' has no nets from an architecture string"):
        registry.build_arch("decolle", "8c3-10", (1, 8, 8), 4, loop.TrainConfig("decolle", "digits").options, 1.0, 1.0)


def _cfg(**kw):
    return loop.TrainConfig(**{"rule": "ell", "dataset": "digits", "batch": 50, "lr": 2e-3, "limit": 300, "eval_train": False, **kw})


def _state(learner):
    return {k: v.clone() for k, v in learner.state_dict().items()}


def test_resume_gives_the_uninterrupted_result_bit_for_bit(digits, tmp_path):
    spec = loop.override_spec(S.load("digits"), encoding="rate")  # the rate code draws every epoch
    cfg = _cfg()
    ref, h_ref = loop.train(spec, cfg, epochs=2, out=tmp_path / "ref", progress=False, ds=digits)
    again, _ = loop.train(spec, cfg, epochs=2, out=tmp_path / "again", progress=False, ds=digits)
    loop.train(spec, cfg, epochs=1, out=tmp_path / "cut", progress=False, ds=digits)
    res, h_res = loop.train(spec, cfg, epochs=2, out=tmp_path / "cut", resume=True, progress=False, ds=digits)
    a, b, c = _state(ref), _state(again), _state(res)
    assert a.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed, different result"
    assert all(torch.equal(a[k], c[k]) for k in a), "resumed run differs"
    strip = lambda h: [(m.epoch, m.loss, m.losses, m.test_acc, m.lr) for m in h]
    assert strip(h_res) == strip(h_ref)
    other, _ = loop.train(spec, _cfg(seed=1, options=loop.RuleOptions(seed=1)), epochs=1, out=tmp_path / "seed1", progress=False, ds=digits)
    assert not torch.equal(_state(other)["layers.0.w"], a["layers.0.w"])
    # the checkpoint holds what the learner had after the last epoch
    ck = loop.load_checkpoint(tmp_path / "cut")
    assert ck.epoch == 2 and len(ck.history) == 2
    assert all(torch.equal(ck.state["model"][k], a[k]) for k in a)


def test_an_observer_follows_a_run_and_can_stop_it_after_a_checkpoint(digits, tmp_path):
    """The loop's hooks (what tools/train_suite.py uses instead of patching the loop): the epochs
    start once, every evaluation is bracketed, a stop after epoch 1 of 3 keeps that checkpoint,
    and the run resumes from it."""
    spec = S.load("digits")
    events = []

    class Observer:
        def on_train_start(self):
            events.append("start")

        def on_evaluate(self, begin):
            events.append("eval" if begin else "/eval")

        def on_checkpoint(self, epoch, epochs):
            events.append(f"ckpt {epoch}/{epochs}")
            return epoch == 1

    remove = loop.add_observer(Observer())
    try:
        with pytest.raises(loop.StopRequested):
            loop.train(spec, _cfg(limit=100), epochs=3, out=tmp_path, progress=False, ds=digits)
    finally:
        remove()
    assert events == ["start", "eval", "/eval", "ckpt 1/3"]
    assert loop.load_checkpoint(tmp_path / loop.CHECKPOINT).epoch == 1
    _, history = loop.train(spec, _cfg(limit=100), epochs=2, out=tmp_path, resume=True, progress=False, ds=digits)
    assert [h.epoch for h in history] == [1, 2] and events[-1] == "ckpt 1/3"  # removed: told nothing more


def test_resume_refuses_another_run_or_a_missing_checkpoint(digits, tmp_path):
    spec = S.load("digits")
    loop.train(spec, _cfg(limit=100), epochs=1, out=tmp_path, progress=False, ds=digits)
    with pytest.raises(LocalsnnError, match="already holds a training checkpoint; continue it with --resume"):
        loop.train(spec, _cfg(limit=100), epochs=2, out=tmp_path, progress=False, ds=digits)
    with pytest.raises(LocalsnnError, match=r"belongs to another run; it differs in lr \(0.002 there, 0.001 now\)"):
        loop.train(spec, _cfg(limit=100, lr=1e-3), epochs=2, out=tmp_path, resume=True, progress=False, ds=digits)
    with pytest.raises(LocalsnnError, match="nothing to resume"):
        loop.train(spec, _cfg(limit=100), epochs=2, out=tmp_path / "empty", resume=True, progress=False, ds=digits)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / loop.CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(LocalsnnError, match="is not a readable localsnn training checkpoint"):
        loop.load_checkpoint(tmp_path / "bad")


def test_step_schedule_and_sgd(digits, tmp_path):
    _, h = loop.train(S.load("digits"), _cfg(limit=50, optimizer="sgd", lr=0.1, lr_step=1, lr_gamma=0.5), epochs=3, out=tmp_path, progress=False, ds=digits)
    assert [m.lr for m in h] == [0.1, 0.05, 0.025]


# -- export ------------------------------------------------------------------------------------


def test_export_loads_in_golden_with_the_float_accuracy(digits, tmp_path):
    """A short ELL training, exported: golden's fixed-point accuracy is the float one, nearly."""
    spec = S.load("digits")
    cfg = _cfg(limit=None, batch=100, lr=5e-4)
    learner, h = loop.train(spec, cfg, epochs=3, out=tmp_path / "run", progress=False, ds=digits)
    res = X.export(tmp_path / "run", tmp_path / "exp", progress=False)
    assert res.float_acc == h[-1].test_acc and res.float_acc[-1] > 0.8
    assert abs(res.golden_acc[-1] - res.float_acc[-1]) <= 0.03, res.table()
    params = load_params(tmp_path / "exp" / "weights.npz", S.load(tmp_path / "exp" / "spec.toml"))
    w = learner.float_weights()[0]["w"].double().numpy()
    assert np.array_equal(params.layers[0].w, np.floor(w * 4096 + 0.5).astype(np.int64))
    again = Golden(spec, params)
    assert accuracy(again.infer(again.quantize(digits.x_test, digits.max_value)), digits.y_test) == res.golden_acc
    summary = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert summary["golden_test_acc"] == res.golden_acc and summary["arrays"][0]["saturated"] == 0
    # another spec's formats: the same net in narrower weights saturates and says so
    narrow_w = FixedFormat(8, 6, rounding="stochastic")
    narrow = replace(spec, name="digits-s8", layers=(replace(spec.layers[0], weight=narrow_w, accumulator=24),))
    res2 = X.export(tmp_path / "run", tmp_path / "exp8", spec=narrow, evaluate=False)
    assert res2.report[0].format == "s8.6" and res2.golden_acc == []
    assert np.array_equal(res2.params.layers[0].w, np.clip(np.floor(w * 64 + 0.5), -128, 127))


def test_export_decolle_with_bias_and_feedback(digits, tmp_path):
    spec = S.load("digits-decolle")
    loop.train(spec, _cfg(rule="decolle", limit=400, batch=20, lr=1e-3), epochs=1, out=tmp_path / "run", progress=False, ds=digits)
    res = X.export(tmp_path / "run", tmp_path / "exp", progress=False)
    assert [r.name for r in res.report] == ["w", "clf_w", "bias", "feedback"]
    assert res.params.layers[0].bias.shape == (64,) and res.params.layers[0].feedback.shape == (64, 10)
    assert abs(res.golden_acc[-1] - res.float_acc[-1]) <= 0.05, res.table()


def test_export_refuses_a_conv_net_and_another_topology(digits, tmp_path):
    loop.train(S.load("digits"), _cfg(limit=60, arch="4c3-p2-10"), epochs=1, out=tmp_path / "conv", progress=False, ds=digits)
    with pytest.raises(LocalsnnError, match="holds a convolutional net .*fully connected layers only"):
        X.export(tmp_path / "conv", tmp_path / "exp")
    loop.train(S.load("digits"), _cfg(limit=60), epochs=1, out=tmp_path / "fc", progress=False, ds=digits)
    with pytest.raises(LocalsnnError, match="the spec 'mnist-ell' is 784-800-10 but .* was trained as 64-64-10"):
        X.export(tmp_path / "fc", tmp_path / "exp", spec=S.load("mnist"))


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_train_resume_export_and_golden_continues(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--config", "digits", "--rule", "ell", "--dataset", "digits", "--limit", "400", "--batch", "50", "--lr", "2e-3", "-o", str(out), "--quiet"]
    assert main([*base, "--epochs", "1"]) == 0
    text = capsys.readouterr().out
    assert "digits-ell: float training, rule ell (step updates), direct code, T = 10" in text
    assert "epoch   1  test" in text and f"localsnn export {out}" in text
    assert main([*base, "--epochs", "2", "--resume"]) == 0
    text = capsys.readouterr().out
    assert "epoch   1  test" in text and "epoch   2  test" in text  # the first epoch's line is the checkpoint's
    for name in ("checkpoint.pt", "metrics.json", "metrics.csv", "spec.toml", "config.json", "confusion.json", "learning_curves.png", "confusion.png", "raster.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2] and metrics[0]["lr"] == 2e-3
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and 0 < float(rows[1]["test_acc_layer0"]) <= 1
    assert {"loss", "loss/layer0", "train_acc_layer0"} <= rows[0].keys()
    cm = np.array(json.loads((out / "confusion.json").read_text())["layers"])
    assert cm.shape == (1, 10, 10) and cm.sum() == 355
    assert np.isclose(np.trace(cm[0]) / 355, metrics[-1]["test_acc"][0])
    assert main([*base, "--epochs", "2"]) == 2
    assert "already holds a training checkpoint" in capsys.readouterr().err

    exp = tmp_path / "exp"
    assert main(["export", str(out), "-o", str(exp), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "layer   float (checkpoint)   golden fixed point (exported)" in text
    assert f"{100 * metrics[-1]['test_acc'][0]:16.2f}%" in text
    assert "saturated 0 (0.00%)" in text
    assert main(["golden", "train", "--config", str(exp / "spec.toml"), "--dataset", "digits", "--weights", str(exp / "weights.npz"), "--epochs", "1", "--limit", "100", "--out", str(tmp_path / "gold"), "--quiet"]) == 0
    assert "epoch   1  test" in capsys.readouterr().out


def test_cli_bad_input_is_one_clear_message(tmp_path, capsys, monkeypatch):
    base = ["train", "--config", "digits", "--dataset", "digits", "-o", str(tmp_path / "x"), "--quiet"]
    assert main([*base, "--rule", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == "localsnn: error: unknown rule 'nope'; allowed: bptt, ell, bell, fell, fell-kp, decolle, tlbptt\n"
    assert main(["train", "--config", "digits", "--rule", "ell", "--dataset", "cifar"]) == 2  # argparse's error, one line
    err = capsys.readouterr().err
    assert "invalid choice: 'cifar'" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*base, "--rule", "ell", "--device", "cuda"]) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err
    assert main([*base, "--rule", "ell", "--device", "tpu"]) == 2
    assert "unknown device 'tpu'; use cpu, cuda or cuda:N" in capsys.readouterr().err
    assert main(["train", "--config", "digits-decolle", "--rule", "ell", "--dataset", "digits", "-o", str(tmp_path / "y"), "--quiet"]) == 2
    assert "layers[0].neuron.model is 'decolle'; rule 'ell' runs 'lif' neurons" in capsys.readouterr().err
    assert main(["train", "--config", "mnist", "--rule", "ell", "--dataset", "digits", "-o", str(tmp_path / "y"), "--quiet"]) == 2
    assert "dataset 'digits' has 64 inputs per sample but the spec 'mnist-ell' expects 784" in capsys.readouterr().err
    assert main([*base, "--rule", "decolle", "--arch", "8c3-10"]) == 2
    assert "--arch: rule 'decolle' has no nets from an architecture string" in capsys.readouterr().err
    assert main([*base, "--rule", "ell", "--arch", "8q3-10", "--limit", "10"]) == 2
    cap = capsys.readouterr()
    assert "arch '8q3-10': token 1 '8q3' is not a layer" in cap.err and "Traceback" not in cap.err
    assert "float training" not in cap.out  # refused before anything is printed
    assert main([*base, "--rule", "ell", "--decolle-reg", "1"]) == 2
    assert "--decolle-reg takes 2 comma-separated numbers" in capsys.readouterr().err
    assert main([*base, "--rule", "ell", "--epochs", "1", "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none"), "-o", str(tmp_path / "e")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
