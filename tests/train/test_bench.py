"""``localsnn bench train`` (train/bench.py) on tiny nets on the CPU: every rule in the table, a
missing reference library reported and not fatal, the CPU memory measurement, the goal checks."""

from __future__ import annotations

import csv
import json
import math
import sys

import pytest
import torch
from localsnn.train import bench

from localsnn.cli import main

TINY = "12-8-3"


def hide(monkeypatch, *libs):
    """Make ``import lib`` fail as it does when the library is not installed."""
    for lib in libs:
        for name in [m for m in sys.modules if m == lib or m.startswith(lib + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, lib, None)


def run(**kw):
    lines: list[str] = []
    rep = bench.bench_train(echo=lines.append, device="cpu", **kw)
    return rep, "\n".join(lines)


def table_rows(text: str) -> dict[tuple[str, int], list[str]]:
    """``(method, T) -> the row's fields`` from the printed table."""
    rows = {}
    body = text.split("-" * 20, 1)[1].split("goal checks:")[0]
    for line in body.strip().splitlines():
        f = line.split()
        if len(f) >= 7 and f[0] != "-" * len(f[0]):
            rows[(f[0], int(f[1]))] = f
    return rows


def test_every_rule_is_in_the_table_and_missing_libraries_are_reported(monkeypatch):
    hide(monkeypatch, "spikingjelly", "snntorch")
    rep, text = run(net=TINY, timesteps=[2, 6], batch=4, iters=1, warmup=0)
    rows = table_rows(text)
    for T in (2, 6):
        for m in bench.OURS:
            assert (m, T) in rows, f"{m} at T = {T} missing from the table:\n{text}"
            rate = float(rows[(m, T)][2])
            assert math.isfinite(rate) and rate > 0, rows[(m, T)]
            r = rep.result(m, T)
            assert r.iters == 1 and r.samples_per_s > 0 and r.step_mib >= 0 and r.held_mib > 0
    assert not any(m in bench.REFERENCES for m, _ in rows)
    for lib in bench.REFERENCES:
        assert f"{lib}: not installed; the comparison with it is skipped (install: pip install spikingjelly snntorch)" in text
        assert rep.missing[lib] == "not installed"
    assert "throughput / SpikingJelly's at T = 2 (T = 10 was not run): cannot be checked, spikingjelly not installed" in text


def test_cli_runs_without_the_references_and_writes_csv_json(monkeypatch, tmp_path, capsys):
    hide(monkeypatch, "spikingjelly", "snntorch")
    rc = main(["bench", "train", "--net", TINY, "--timesteps", "3", "--batch", "2", "--iters", "1", "--warmup", "0", "--device", "cpu", "--rules", "ell,bptt", "snntorch", "spikingjelly", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "snntorch: not installed" in out and "spikingjelly: not installed" in out
    with open(tmp_path / "bench_train.csv", newline="") as f:
        got = [(r["method"], int(r["timesteps"])) for r in csv.DictReader(f)]
    assert got == [("ell", 3), ("bptt", 3)]
    data = json.loads((tmp_path / "bench_train.json").read_text())
    assert [r["method"] for r in data["results"]] == ["ell", "bptt"]
    assert set(data["missing"]) == {"spikingjelly", "snntorch"}


def test_unknown_method_is_an_error(capsys):
    assert main(["bench", "train", "--net", TINY, "--timesteps", "2", "--device", "cpu", "--rules", "ell,elll"]) == 2
    assert "unknown method(s) elll" in capsys.readouterr().err


@pytest.mark.parametrize("lib", bench.REFERENCES)
def test_references_run_beside_the_rules_when_installed(lib):
    pytest.importorskip(lib)
    rep, text = run(net=TINY, timesteps=[10], batch=4, iters=1, warmup=1, rules=["ell", "decolle", lib])
    assert (lib, 10) in table_rows(text)
    assert rep.result(lib, 10).samples_per_s > 0
    if lib == "spikingjelly":
        r = rep.result("ell", 10).samples_per_s / rep.result(lib, 10).samples_per_s
        assert f"ELL throughput / SpikingJelly's at T = 10: {rep.result('ell', 10).samples_per_s:.1f} / {rep.result(lib, 10).samples_per_s:.1f} = {r:.2f}x" in text


def test_a_reference_that_fails_is_reported_not_fatal(monkeypatch):
    pytest.importorskip("snntorch")

    def broken(self, x):
        raise RuntimeError("no kernel for this device\nsecond line")

    monkeypatch.setattr(bench._RefNet, "forward", broken)
    rep, text = run(net=TINY, timesteps=[3], batch=2, iters=1, warmup=0, rules=["ell", "snntorch"])
    assert "failed: RuntimeError: no kernel for this device" in rep.result("snntorch", 3).note
    assert "second line" not in text
    assert rep.result("ell", 3).samples_per_s > 0


def test_cpu_step_peak_is_the_largest_live_allocation():
    mib = 1 << 20

    def step():
        a = torch.ones(mib // 4)  # 1 MiB
        del a
        b = torch.ones(3 * mib // 4)  # 3 MiB, alone
        c = torch.ones(mib // 4)  # + 1 MiB while b lives: the peak, 4 MiB
        return float(b[0] + c[0])

    peak = bench.cpu_step_peak(step)
    assert 4 * mib <= peak < 4 * mib + 64 * 1024, peak / mib


def test_memory_of_ell_decolle_fell_does_not_grow_with_T_but_bptt_does(monkeypatch):
    hide(monkeypatch, "spikingjelly", "snntorch")
    net, B = "64-96-10", 20
    rep, text = run(net=net, timesteps=[5, 40], batch=B, iters=1, warmup=1, rules=["ell", "decolle", "fell", "bptt"])
    for m in ("ell", "decolle", "fell"):
        a, b = rep.result(m, 5).step_mib, rep.result(m, 40).step_mib
        assert b == pytest.approx(a, rel=0.02), (m, a, b)
        assert f"step memory of {m:12s} T = 40 / T = 5" in text and "independent of T: yes" in text
    assert rep.result("bptt", 40).step_mib > 3 * rep.result("bptt", 5).step_mib
    traces = B * (64 * 96 + 96 * 10) * 4 / 2**20
    assert bench._trace_mib(net, B) == pytest.approx(traces)
    assert traces <= rep.result("fell", 40).step_mib < 1.5 * traces
    assert rep.result("fell", 5).step_mib > 4 * rep.result("ell", 5).step_mib
    assert rep.result("ell", 40).held_mib > rep.result("ell", 5).held_mib  # the input [T, B, 64] is held


def _result(m, T, rate, step):
    return bench.Result(m, T, 100, 1, 1.0, rate, 1.0, step, 1.0 + step, "test")


def test_goal_checks_compute_the_ratios():
    results = [
        _result("ell", 10, 500.0, 8.0), _result("decolle", 10, 150.0, 9.0), _result("spikingjelly", 10, 200.0, 20.0), _result("fell", 10, 10.0, 250.0),
        _result("ell", 100, 50.0, 8.0), _result("decolle", 100, 15.0, 30.0), _result("spikingjelly", 100, 20.0, 200.0), _result("fell", 100, 1.0, 250.0),
    ]
    rep = bench.BenchReport("cpu", "784-800-10", 100, [10, 100], 1, 0, results, {}, [], {})
    checks = bench.goal_checks(rep)
    text = "\n".join(checks)
    assert "ELL throughput / SpikingJelly's at T = 10: 500.0 / 200.0 = 2.50x (goal >= 2x: met)" in text
    assert "DECOLLE throughput / SpikingJelly's at T = 10: 150.0 / 200.0 = 0.75x (goal >= 2x: NOT met)" in text
    assert "step memory of ell          T = 100 / T = 10:     8.00 /     8.00 MiB =  1.00x  (goal independent of T: yes)" in text
    assert "step memory of decolle      T = 100 / T = 10:    30.00 /     9.00 MiB =  3.33x  (goal independent of T: NO)" in text
    assert "spikingjelly T = 100 / T = 10:   200.00 /    20.00 MiB = 10.00x  (keeps the window's history: grows with T)" in text
    traces = 100 * (784 * 800 + 800 * 10) * 4 / 2**20
    assert f"T = 10: {250.0 / traces:.2f}x, T = 100: {250.0 / traces:.2f}x" in text


@pytest.mark.parametrize("net", ["784-10", "a-b-c", "10-0-2"])
def test_bad_net_is_refused(net):
    from localsnn.errors import LocalsnnError

    with pytest.raises(LocalsnnError, match="--net takes"):
        bench.bench_train(net=net, timesteps=[2], device="cpu", echo=lambda s: None)
