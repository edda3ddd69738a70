"""localsnn generate: deterministic output, lint-clean Verilog, a description that matches."""

from __future__ import annotations

import json

from localsnn import spec as S
from localsnn.cli import main
from localsnn.sim.lint import AMARANTH_WAIVERS, lint


def test_generate_is_deterministic_and_lint_clean(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["generate", "--config", "digits-fell", "-o", str(a), "--lanes", "4", "--lint"]) == 0
    assert "verilator --lint-only -Wall: clean" in capsys.readouterr().out
    assert main(["generate", "--config", "digits-fell", "-o", str(b), "--lanes", "4"]) == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    desc = json.loads((a / "localsnn_top.json").read_text())
    assert {p["name"] for p in desc["ports"]} >= {"clk", "rst", "i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready", "bus__addr", "bus__r_data", "bus__ack"}
    names = {e["name"] for e in desc["memory_map"]}
    assert {"layer0.w", "layer0.u", "layer0.clf_w", "layer0.e", "layer0.clf_e"} <= names
    assert S.loads(desc["spec_toml"]) == S.load("digits-fell")
    assert (a / "init" / "layer0.w.hex").read_text().count("\n") == 64 * 16


def test_decolle_two_layer_design_is_lint_clean(tmp_path):
    from localsnn.rtl.generate import generate
    from localsnn.sim.configs import matrix_spec

    desc = generate(matrix_spec("decolle", "rate", "two"), tmp_path, lanes=8)
    lint(tmp_path / f"{desc['top']}.v", desc["top"], waivers=AMARANTH_WAIVERS)
