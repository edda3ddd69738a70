"""The CLI, the training loop (metrics, checkpoints, resume) and the digits accuracy goals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from localsnn import spec as S
from localsnn.cli import main
from localsnn.data import load
from localsnn.golden import Golden, load_params
from localsnn.golden.train import train


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def quantized(spec, ds, n=None):
    g = Golden(spec)
    xtr = g.quantize(ds.x_train[:n] if n else ds.x_train, ds.max_value)
    return xtr, ds.y_train[: len(xtr)], g.quantize(ds.x_test, ds.max_value), ds.y_test


def test_spec_show_check_list(capsys, tmp_path):
    assert main(["spec", "show", "digits"]) == 0
    out = capsys.readouterr().out
    assert "digits-ell: 64 inputs -> 64 -> 10 classes" in out and "decay 94/2**8" in out
    assert main(["spec", "list"]) == 0
    assert "mnist" in capsys.readouterr().out
    assert main(["spec", "check", "mnist"]) == 0
    assert "is a valid spec" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(S.dumps(S.load("digits")).replace("lr_shift = 6", "lr_shift = 1"))
    assert main(["spec", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("localsnn: error: learning.lr_shift: 1 is out of range for these formats; allowed: 5 to 24")
    assert "Traceback" not in err


def test_dataset_and_spec_mismatch_is_an_error(capsys):
    assert main(["golden", "train", "--config", "mnist", "--dataset", "digits", "--epochs", "1", "--quiet"]) == 2
    assert "dataset 'digits' has 64 inputs per sample but the spec 'mnist-ell' expects 784" in capsys.readouterr().err


def _synthetic_events(name: str, folder, per_class: int) -> None:
    """Recordings in the dataset's own file format (``tools/synthetic_events.py``)."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "synthetic_events.py"
    subprocess.run([sys.executable, str(tool), name, str(folder), "--per-class", str(per_class)], check=True, capture_output=True)


def test_event_datasets_learn_in_golden_and_float_from_their_files(tmp_path, capsys):
    """N-MNIST (.bin) and SHD (HDF5) files, binned by the shipped specs ``nmnist`` and ``shd``
    into their steps: golden learns online from them (N-MNIST), the float model trains, exports
    and golden goes on from its weights (SHD); the accuracies are real numbers of these runs."""
    pytest.importorskip("torch")
    data_dir = tmp_path / "data"
    _synthetic_events("nmnist", data_dir, 3)
    _synthetic_events("shd", data_dir, 2)
    assert main(["golden", "train", "--config", "nmnist", "--dataset", "nmnist", "--data-dir", str(data_dir), "--epochs", "1", "--out", str(tmp_path / "g"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nmnist: 30 train / 10 test recordings, 2312 channels, binned into 10 steps of 30 ms (spikes), 10 classes" in out and "epoch   1" in out
    assert main(["train", "--config", "shd", "--rule", "ell", "--dataset", "shd", "--data-dir", str(data_dir), "--epochs", "1", "-o", str(tmp_path / "f"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "events code, T = 25, on shd: 40 train / 20 test recordings, 700 channels" in out and "epoch   1" in out
    assert main(["export", str(tmp_path / "f"), "-o", str(tmp_path / "x"), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "golden fixed point (exported)" in out and f"--data-dir {data_dir}" in out
    assert main(["golden", "eval", "--config", str(tmp_path / "x" / "spec.toml"), "--dataset", "shd", "--data-dir", str(data_dir), "--weights", str(tmp_path / "x" / "weights.npz")]) == 0


def test_train_writes_results_and_eval_reads_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["golden", "train", "--config", "digits", "--dataset", "digits", "--epochs", "3", "--limit", "300", "--out", str(out), "--quiet"]) == 0
    text_train = capsys.readouterr().out
    assert "epoch   3" in text_train and "best test accuracy" in text_train
    for name in ("weights.npz", "weights-best.npz", "metrics.json", "metrics.csv", "spec.toml", "checkpoint.npz", "learning_curves.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert 0 <= metrics[-1]["test_acc"][0] <= 1
    assert main(["golden", "eval", "--config", "digits", "--dataset", "digits", "--weights", str(out / "weights.npz")]) == 0
    text = capsys.readouterr().out
    assert f"layer 0: {100 * metrics[-1]['test_acc'][0]:5.1f}%" in text
    assert "confusion matrix" in text
    # weights-best.npz holds the epoch with the best test accuracy, and the summary says which
    best = max(metrics, key=lambda m: m["test_acc"][0])
    assert f"best test accuracy (network decision): {100 * best['test_acc'][0]:.1f}% at epoch {best['epoch']}" in text_train
    assert main(["golden", "eval", "--config", "digits", "--dataset", "digits", "--weights", str(out / "weights-best.npz")]) == 0
    assert f"layer 0: {100 * best['test_acc'][0]:5.1f}%" in capsys.readouterr().out
    assert main(["golden", "eval", "--config", "digits", "--dataset", "digits"]) == 2
    assert "the following arguments are required: --weights" in capsys.readouterr().err


def test_resume_after_an_interruption_gives_the_same_result(digits, tmp_path, monkeypatch):
    spec = S.load("digits")
    data = quantized(spec, digits, 240)
    g_ref, h_ref = train(spec, *data, epochs=2, out=tmp_path / "ref", checkpoint_every=50, progress=False)
    # interrupt in the middle of the second epoch
    calls = {"n": 0}
    real = Golden.run_sample

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 240 + 130:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Golden, "run_sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        train(spec, *data, epochs=2, out=tmp_path / "cut", checkpoint_every=50, progress=False)
    monkeypatch.setattr(Golden, "run_sample", real)
    g_res, h_res = train(spec, *data, epochs=2, out=tmp_path / "cut", resume=True, checkpoint_every=50, progress=False)
    assert g_res.params.equal(g_ref.params)
    assert [h.test_acc for h in h_res] == [h.test_acc for h in h_ref]
    assert [h.online_train_acc for h in h_res] == [h.online_train_acc for h in h_ref]
    assert load_params(tmp_path / "cut" / "weights.npz", spec).equal(g_ref.params)


def test_resume_refuses_another_spec_or_a_missing_checkpoint(digits, tmp_path):
    spec = S.load("digits")
    data = quantized(spec, digits, 50)
    train(spec, *data, epochs=1, out=tmp_path, progress=False)
    other = S.load("digits-fell")
    with pytest.raises(Exception, match="was written for a different spec"):
        train(other, *data, epochs=2, out=tmp_path, resume=True, progress=False)
    with pytest.raises(Exception, match="nothing to resume"):
        train(spec, *data, epochs=2, out=tmp_path / "empty", resume=True, progress=False)


def test_demo_runs(tmp_path, capsys):
    assert main(["demo", "--epochs", "1", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "layer 0 classifier: test accuracy" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "digits-fell", "digits-decolle"])
def test_digits_accuracy_goal(digits, name):
    """Golden fixed point, online learning from random init: >= 90 % test within 10 epochs."""
    spec = S.load(name)
    _, history = train(spec, *quantized(spec, digits), epochs=10, eval_train=False, progress=False)
    best = max(h.test_acc[-1] for h in history)
    print(f"{name}: test accuracy per epoch {[round(h.test_acc[-1], 4) for h in history]}")
    assert best >= 0.90
    assert np.isfinite(best)
