"""The training suite (tools/train_suite.py, a tool beside the package): plans, the budget, resume across calls, failures, the
table, bundles and the packed data. On the CPU with the 8x8 digits: each run is the real
`localsnn train` in a subprocess, one torch thread each."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from localsnn import data
from localsnn import spec as specmod


def _load_tool(name: str):
    """A script of the repository's tools/ folder (not part of the installed package)."""
    path = Path(__file__).resolve().parents[2] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


S = _load_tool("train_suite")

FAST = ["--device", "cpu", "--threads", "1", "--min-start-s", "1"]


def plan_file(tmp_path: Path, body: str, name: str = "plan.toml") -> str:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return str(path)


def digits_run(name: str, epochs: int, *, rule: str = "ell", limit: int | None = 300, extra: str = "") -> str:
    lim = f"limit = {limit}\n" if limit else ""
    return f'[[runs]]\nname = "{name}"\nrule = "{rule}"\ndataset = "digits"\nconfig = "digits"\nepochs = {epochs}\n{lim}{extra}\n'


def suite_json(out: Path) -> dict:
    return json.loads((out / S.SUITE_JSON).read_text())


def ckpt_epoch(folder: Path) -> int:
    return int(torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)["epoch"])


# -- plans --------------------------------------------------------------------------------------


def test_paper_plan_holds_the_issue_runs_with_the_papers_hyperparameters(tmp_path):
    plan = S.load_plan("paper")
    S.check_plan(plan)
    runs = {r.name: r for r in plan.runs}
    for name in ("mnist-ell", "mnist-fell", "mnist-bell"):
        assert runs[name].goal == pytest.approx(0.984) and runs[name].config == "mnist" and runs[name].encoding is None
    assert runs["mnist-ell"].epochs == runs["mnist-fell"].epochs == 50 and runs["mnist-bell"].epochs == 150
    assert runs["mnist-bptt"].rule == "bptt" and runs["mnist-bptt"].goal is None
    cnn = runs["mnist-cnn-ell"]
    assert cnn.arch == "12c5-p2-64c5-p2-10" and cnn.goal == pytest.approx(0.992)
    for rule in ("ell", "fell", "bell"):
        r = runs[f"mnist-latency-{rule}"]
        assert (r.rule, r.encoding, r.tau) == (rule, "latency", 40.0)
    assert plan.relations[0].runs == ("mnist-latency-bell", "mnist-latency-fell", "mnist-latency-ell")
    grid = {(r.k, r.n) for r in plan.runs if r.rule == "tlbptt"}
    assert grid == {(k, n) for k in (10, 5, 2, 1) for n in (1, 2)}
    assert runs["mnist-decolle"].rule == "decolle"
    for r in plan.runs:  # Ma et al. Table IV: batch 100, Adam 5e-4 divided by 5 every 15 epochs
        assert (r.batch, r.optimizer, r.lr, r.lr_step, r.lr_gamma, r.dataset) == (100, "adam", 5e-4, 15, 0.2, "mnist")
    args = runs["mnist-tlbptt-k2-n2"].train_args(device="cuda", config=S.config_path(runs["mnist-tlbptt-k2-n2"]), data_dir="/d/mnist", resume=True)
    assert args[:3] == ["train", "--config", "specs/mnist-800-800.toml"]
    for pair in (["--k", "2"], ["--n", "2"], ["--device", "cuda"], ["--data-dir", "/d/mnist"], ["-o", "mnist-tlbptt-k2-n2"]):
        i = args.index(pair[0])
        assert args[i : i + 2] == pair
    assert args[-1] == "--resume"
    # the generated specs are valid, with the layers the runs need
    S.write_specs(list(plan.runs), tmp_path)
    two = specmod.load(tmp_path / "specs" / "mnist-800-800.toml")
    assert (two.inputs, [l.size for l in two.layers], two.classes) == (784, [800, 800], 10)
    dec = specmod.load(tmp_path / "specs" / "mnist-decolle.toml")
    assert (dec.inputs, [l.size for l in dec.layers], dec.layers[0].neuron.model) == (784, [800], "decolle")
    # checkpoint sizes for the state limit: weights and Adam's two moments, float32
    assert S.state_bytes(runs["mnist-ell"], tmp_path) == pytest.approx(12 * (784 * 800 + 800 * 10), rel=0.05)


def test_bad_plan_and_run_names_are_one_clear_message(tmp_path, capsys):
    assert S.main(["--plan", "nope", "-o", str(tmp_path / "o")]) == 2
    assert "unknown plan 'nope'; plans: paper, smoke" in capsys.readouterr().err
    assert S.main(["--plan", "smoke", "--only", "digits-ell,nope", "-o", str(tmp_path / "o")]) == 2
    assert "--only: no run 'nope' in plan 'smoke'; its runs: digits-ell, digits-fell, digits-decolle" in capsys.readouterr().err
    assert S.main(["--plan", str(tmp_path / "missing.toml"), "-o", str(tmp_path / "o")]) == 2
    assert "plan file" in capsys.readouterr().err
    twice = plan_file(tmp_path, digits_run("a", 1) + digits_run("a", 1), "twice.toml")
    assert S.main(["--plan", twice, "-o", str(tmp_path / "o")]) == 2
    assert "run name 'a' is used twice" in capsys.readouterr().err
    key = plan_file(tmp_path, digits_run("a", 1, extra="epoch = 3\n"), "key.toml")
    assert S.main(["--plan", key, "-o", str(tmp_path / "o")]) == 2
    assert "unknown key(s) epoch" in capsys.readouterr().err
    rule = plan_file(tmp_path, digits_run("a", 1, rule="elll"), "rule.toml")
    assert S.main(["--plan", rule, "-o", str(tmp_path / "o")]) == 2
    assert "run 'a': unknown rule 'elll'; allowed: " in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing ran


# -- running ------------------------------------------------------------------------------------


def test_smoke_plan_trains_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "suite"
    assert S.main(["--plan", "smoke", *FAST, "--budget-s", "300", "--parallel", "3", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / S.SUITE_MD).read_text()
    assert md in printed
    doc = suite_json(out)
    for name in ("digits-ell", "digits-fell", "digits-decolle"):
        r = doc["runs"][name]
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert (r["epochs_done"], r["epochs_planned"], r["status"], r["finished"]) == (1, 1, "done", True)
        assert r["best_test_acc"] == [max(m["test_acc"][0] for m in metrics)] and r["last_test_acc"] == metrics[-1]["test_acc"]
        assert r["memory"]["rss_peak"] > 0 and r["memory"]["device"] == "cpu"
        assert f"| {name} | `localsnn train --config " in md and f"-o {name}` | 1/1 | {100 * r['best_test_acc'][0]:.2f} |" in md
    ell, dec = doc["runs"]["digits-ell"]["best_test_acc"][0], doc["runs"]["digits-decolle"]["best_test_acc"][0]
    assert ell > 0.5 and doc["runs"]["digits-ell"]["met"] == "yes"  # goal 50 % after one epoch (69.30 % here)
    assert "| 50.00 | yes |" in md and "n/a (CPU RSS" in md
    verdict = "holds" if ell > dec else "does not hold"
    assert f"smoke: ELL > DECOLLE after one epoch: digits-ell {100 * ell:.2f} > digits-decolle {100 * dec:.2f}: **{verdict}**" in md
    # a second call finds every run finished and starts none
    assert S.main(["--plan", "smoke", *FAST, "--budget-s", "300", "-o", str(out)]) == 0
    doc2 = suite_json(out)
    assert len(doc2["calls"]) == 2 and all(len(r["calls"]) == 1 for r in doc2["runs"].values())
    assert doc2["runs"]["digits-ell"]["reason"] == "already finished"


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path, capsys):
    plan = plan_file(tmp_path, digits_run("bad", 2, rule="tlbptt", extra="n = 3\n") + digits_run("good", 1))
    out = tmp_path / "suite"
    assert S.main(["--plan", plan, *FAST, "--budget-s", "300", "--parallel", "2", "-o", str(out)]) == 1
    doc = suite_json(out)
    bad, good = doc["runs"]["bad"], doc["runs"]["good"]
    assert (good["status"], good["epochs_done"]) == ("done", 1)
    assert bad["status"] == "failed" and bad["reason"] == "exit status 2" and bad["epochs_done"] == 0
    assert any("options.n: 3 is out of range" in line for line in bad["stderr_tail"])
    row = next(line for line in (out / S.SUITE_MD).read_text().splitlines() if line.startswith("| bad |"))
    assert "failed: exit status 2<br>localsnn: error: options.n: 3 is out of range" in row


def test_resume_across_calls_and_a_bundle_round_trip(tmp_path):
    plan = plan_file(tmp_path, digits_run("a", 2) + digits_run("b", 1))
    out = tmp_path / "device" / "suite"
    assert S.main(["--plan", plan, *FAST, "--budget-s", "300", "--parallel", "2", "--epochs-per-call", "1", "-o", str(out), "--bundle", str(tmp_path / "OUT")]) == 0
    doc = suite_json(out)
    assert (doc["runs"]["a"]["epochs_done"], doc["runs"]["a"]["status"], doc["runs"]["a"]["reason"]) == (1, "stopped", "--epochs-per-call 1")
    assert doc["runs"]["b"]["finished"]
    first = json.loads((out / "a" / "metrics.json").read_text())
    # the bundle: parts, suite.md/json beside them; the finished run's checkpoint stays behind
    parts = sorted((tmp_path / "OUT").glob(S.BUNDLE_PREFIX + "*"))
    assert parts and (tmp_path / "OUT" / S.SUITE_MD).exists() and all(p.stat().st_size <= S.BUNDLE_PART for p in parts)
    here = tmp_path / "here" / "suite"
    assert S.main(["--unbundle", str(tmp_path / "OUT"), "-o", str(here)]) == 0
    assert (here / "a" / "checkpoint.pt").exists() and not (here / "b" / "checkpoint.pt").exists()
    assert (here / "b" / "metrics.json").exists()
    # the next call continues run a from its checkpoint (--resume) and leaves the finished b alone
    assert S.main(["--plan", plan, *FAST, "--budget-s", "300", "-o", str(here)]) == 0
    doc = suite_json(here)
    a = doc["runs"]["a"]
    assert (a["epochs_done"], a["status"]) == (2, "done") and ckpt_epoch(here / "a") == 2
    assert a["calls"][0]["argv"][-1] != "--resume" and a["calls"][1]["argv"][-1] == "--resume"
    assert "resumed after epoch 1" in (here / "a" / S.STDOUT_LOG).read_text()
    assert json.loads((here / "a" / "metrics.json").read_text())[0] == first[0]
    assert doc["runs"]["b"]["status"] == "done" and len(doc["runs"]["b"]["calls"]) == 1
    assert len(doc["calls"]) == 2


def test_the_budget_stops_a_run_after_a_checkpoint_and_the_next_call_goes_on(tmp_path):
    plan = plan_file(tmp_path, digits_run("long", 1000, limit=100))
    out = tmp_path / "suite"
    t0 = time.time()
    assert S.main(["--plan", plan, *FAST, "--budget-s", "20", "--grace-s", "5", "-o", str(out)]) == 0
    assert time.time() - t0 < 20 + 5 + 10
    r = suite_json(out)["runs"]["long"]
    done = r["epochs_done"]
    assert r["status"] == "stopped" and 0 < done < 1000
    assert r["reason"].startswith(f"after epoch {done}: the next would need")
    assert ckpt_epoch(out / "long") == done == len(json.loads((out / "long" / "metrics.json").read_text()))
    assert "localsnn: interrupted; continue from the last checkpoint" in (out / "long" / S.STDERR_LOG).read_text()
    assert S.main(["--plan", plan, *FAST, "--budget-s", "15", "--grace-s", "5", "-o", str(out)]) == 0
    r = suite_json(out)["runs"]["long"]
    assert r["calls"][1]["argv"][-1] == "--resume" and r["calls"][1]["epochs"][0] == done
    assert r["epochs_done"] > done or "during epoch" in r["reason"]  # (a very slow start leaves no time for an epoch)
    assert ckpt_epoch(out / "long") == r["epochs_done"]


def test_a_run_whose_checkpoint_is_lost_is_not_restarted_silently(tmp_path):
    plan = plan_file(tmp_path, digits_run("a", 3))
    out = tmp_path / "suite"
    assert S.main(["--plan", plan, *FAST, "--epochs-per-call", "1", "-o", str(out)]) == 0
    (out / "a" / "checkpoint.pt").unlink()
    assert S.main(["--plan", plan, *FAST, "-o", str(out)]) == 0
    r = suite_json(out)["runs"]["a"]
    assert r["status"] == "not started" and "checkpoint is missing" in r["reason"] and r["epochs_done"] == 1


# -- data for the GPU machine -------------------------------------------------------------------


def _idx(path: Path, array: np.ndarray) -> None:
    data._write_idx(path, array)


def test_pack_data_gzips_the_cache_and_the_loader_reads_the_packed_folder(tmp_path, monkeypatch):
    """With a tiny stand-in for the MNIST cache (its digests pinned for the test): the packed
    folder holds the four IDX files gzipped, which `data.load(.., data_dir)` (and so `localsnn
    train --data-dir`) reads as they are, and the pure-Python tomli_w for the GPU machine."""
    import hashlib

    cache = tmp_path / "cache"
    (cache / "mnist").mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 20, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 5, dtype=np.uint8),
    }
    sha = {}
    for f, a in arrays.items():
        _idx(cache / "mnist" / f, a)
        sha[f] = hashlib.sha256((cache / "mnist" / f).read_bytes()).hexdigest()
    monkeypatch.setenv("LOCALSNN_CACHE", str(cache))
    monkeypatch.setattr(data, "MNIST_SHA256", sha)
    dest = tmp_path / "pack"
    assert S.main(["--pack-data", str(dest)]) == 0
    for f, a in arrays.items():
        packed = dest / "mnist" / f"{f}.gz"
        assert packed.exists() and not (dest / "mnist" / f).exists()
        assert gzip.decompress(packed.read_bytes()) == (cache / "mnist" / f).read_bytes()
    ds = data.load("mnist", dest / "mnist", fetch=False)
    assert np.array_equal(ds.x_train, arrays["train-images-idx3-ubyte"].reshape(20, -1))
    assert np.array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert (dest / "site" / "tomli_w" / "__init__.py").exists()
    # the suite passes DIR/<dataset> to each run; a folder without the dataset fails that run only
    r = S.Run("m", "ell", "mnist", 1)
    st = S.Suite(S.Plan("p", (r,)), [r], tmp_path / "o", data_dir=str(dest))
    assert st._data_dir(r) == str((dest / "mnist").resolve())
    assert st._data_dir(S.Run("d", "ell", "digits", 1, config="digits")) is None
