"""localsnn synth: a real iCEBreaker build with its report and the cache, a design too big for
the iCEstick, board names, the report's table and parsers, the sweep's outputs."""

from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest
from localsnn.synth.boards import (
    UnknownBoardError,
    UnsupportedBoardError,
    resolve_board,
)
from localsnn.synth.flow import build
from localsnn.synth.report import (
    BuildReport,
    Clock,
    DoesNotFitError,
    Resource,
    clocks_from,
    overflowing,
    parse_utilisation_log,
    resources_from,
    yosys_cells,
)
from localsnn.synth.sweep import markdown_table, plot, sweep_spec, write_csv

from localsnn import spec as S
from localsnn.cli import main


def small_spec(rule: str = "none") -> S.NetworkSpec:
    """16 inputs, 8 hidden neurons, 4 classes, the digits formats. Without learning (rule
    none) it builds for the iCE40UP5K in about 30 s, with ELL in about a minute."""
    d = S.load("digits")
    return dataclasses.replace(
        d, name=f"small-{rule}", inputs=16, classes=4, layers=(dataclasses.replace(d.layers[0], size=8),),
        learning=dataclasses.replace(d.learning, rule=rule),
    )


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("LOCALSNN_CACHE", str(root))
    return root


def test_icebreaker_build_report_and_cache(tmp_path, cache):
    """A real iCEBreaker build, its report and the cache: a small net with ELL learning and its
    weights in SPRAM (--spram on puts the learning layer's weights into an SB_SPRAM256KA: Yosys
    maps only a single-port memory without initial contents there, out of block RAM and the
    bitstream). One build for both: the board builds are the slowest part of CI."""
    msgs: list[str] = []
    spec = small_spec("ell")
    rep = build(spec, "icebreaker", tmp_path / "a", spram="on", progress=msgs.append)
    assert not rep.cached
    assert any("synthesis" in m for m in msgs) and any("place and route" in m for m in msgs) and any(" s" in m for m in msgs)
    assert rep.device == "iCE40UP5K" and rep.board_clock_mhz == 12.0 and rep.target_mhz == 30.0
    for name in ("ICESTORM_LC", "yosys:SB_LUT4", "yosys:SB_DFF", "ICESTORM_SPRAM"):
        r = rep.resource(name)
        assert r is not None and 0 < r.used <= r.available, (name, r)
    assert rep.options["spram"] is True and rep.cells.get("SB_SPRAM256KA", 0) >= 1
    assert rep.fmax_mhz >= rep.board_clock_mhz
    assert "weights are in SPRAM" in (tmp_path / "a" / "report.txt").read_text()
    assert any("weights in SPRAM" in m for m in msgs)
    lc = rep.resource("ICESTORM_LC")
    assert lc.available == 5280
    # a logic cell holds at most one LUT4 and one DFF
    assert max(rep.resource("yosys:SB_LUT4").used, rep.resource("yosys:SB_DFF").used) <= lc.used <= rep.resource("yosys:SB_LUT4").used + rep.resource("yosys:SB_DFF").used + rep.resource("yosys:SB_CARRY").used
    assert rep.resource("ICESTORM_SPRAM").available == 4 and rep.resource("ICESTORM_DSP").available == 8
    assert rep.clocks and all(c.fmax_mhz > 0 for c in rep.clocks)
    assert rep.met == (rep.fmax_mhz >= 30.0)
    worst = rep.critical_paths[0]
    assert worst["ns"] > 0 and abs(worst["ns"] - 1000 / rep.fmax_mhz) < 0.15 * worst["ns"]  # Fmax is the worst path's inverse
    out = tmp_path / "a"
    bitstream = (out / "localsnn.bin").read_bytes()
    assert len(bitstream) > 100_000  # an iCE40UP5K image is about 104 kB
    assert "module localsnn" in (out / "localsnn.v").read_text()
    on_disk = json.loads((out / "report.json").read_text())
    assert BuildReport.from_dict(on_disk).resources == rep.resources
    text = (out / "report.txt").read_text()
    assert f"{lc.used}" in text and "5280" in text and "Fmax" in text and "board clock 12 MHz" in text
    assert any(s in text for s in ("met (+", "MISSED by"))
    nextpnr = json.loads((out / "nextpnr-report.json").read_text())
    assert nextpnr["utilization"]["ICESTORM_LC"]["used"] == lc.used

    t0 = time.perf_counter()
    msgs.clear()
    again = build(spec, "icebreaker", tmp_path / "b", spram="on", progress=msgs.append)
    assert time.perf_counter() - t0 < 30
    assert again.cached and any("cached" in m for m in msgs)
    assert again.resources == rep.resources and again.clocks == rep.clocks and again.key == rep.key
    assert (tmp_path / "b" / "localsnn.bin").read_bytes() == bitstream
    assert "[cached]" in (tmp_path / "b" / "report.txt").read_text()


def test_default_digits_net_with_ell_learning_fits_the_icebreaker(tmp_path, cache):
    """Issue 5's first goal: the shipped digits spec (64-64-10, ELL learning on chip, lanes 1)
    behind the UART bridge places and routes on the iCE40UP5K (it fills about 94 % of its logic
    cells, so a change that grows the layer shows here first)."""
    rep = build(S.load("digits"), "icebreaker", tmp_path / "d", lanes=1, progress=lambda _m: None)
    used = {name: rep.resource(name) for name in ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP")}
    for name, r in used.items():
        assert r is not None and 0 < r.used <= r.available, (name, r)
    assert used["ICESTORM_LC"].available == 5280 and used["ICESTORM_RAM"].available == 30
    assert rep.fmax_mhz >= rep.board_clock_mhz  # runs on the board's 12 MHz clock
    assert [c.name for c in rep.clocks] == ["cd_sync.clk"]  # not the packer's constant nets
    assert len((tmp_path / "d" / "localsnn.bin").read_bytes()) > 100_000


def test_digits_fell_builds_for_the_ulx3s_with_the_full_pipeline(tmp_path, cache):
    """The fast chip's first step (issue 13): the digits-fell net with the full pipeline (a
    register between every two stages) for the ECP5-85F. Yosys 0.70 aborts in ABC9's
    reintegration (rtlil.cc:3091) on this design read from Amaranth's RTLIL unless the flow
    runs ``proc; opt_clean`` before ``synth_ecp5``; and the pipeline must keep its clock
    (digits ELL: 27.9 MHz before it, 80.8 with it), so a change that puts a long path back
    fails here."""
    rep = build(S.load("digits-fell"), "ulx3s", tmp_path / "u", lanes=1, progress=lambda _m: None)
    assert rep.options["pipeline"] == "full" and rep.options["script_after_read"] == "proc; opt_clean"
    lut = rep.resource("TRELLIS_COMB")
    assert lut is not None and 0 < lut.used <= lut.available
    assert rep.fmax_mhz >= 70.0, rep.timing_summary()


def test_spram_choices_and_the_block_ram_check(tmp_path, cache):
    from localsnn.errors import LocalsnnError
    from localsnn.synth import flow

    with pytest.raises(LocalsnnError, match="has no SPRAM"):
        build(small_spec(), "ulx3s", tmp_path / "u", spram="on")
    with pytest.raises(LocalsnnError, match="choose one of auto, on, off"):
        build(small_spec(), "icebreaker", tmp_path / "u", spram="yes")
    ice, ecp = resolve_board("icebreaker"), resolve_board("ulx3s")
    assert flow.has_spram(ice) and not flow.has_spram(ecp)
    stat = tmp_path / f"{flow.NAME}.stat.json"
    for used, raises in ((30, False), (31, True)):
        stat.write_text(json.dumps({"modules": {"\\top": {"num_cells_by_type": {"SB_RAM40_4K": used}}}}))
        assert yosys_cells(stat.read_text()).get("SB_RAM40_4K") == used
        for mode, board in (("auto", ice), ("off", ice), ("on", ice), ("auto", ecp)):
            if raises and mode == "auto" and board is ice:
                with pytest.raises(flow._NeedsSpram, match="31 block RAMs needed, the iCE40UP5K has 30"):
                    flow._bram_check(board, tmp_path, mode)
            else:
                flow._bram_check(board, tmp_path, mode)


def test_block_ram_overflow_with_spram_off_suggests_spram(tmp_path):
    from localsnn.synth import flow

    (tmp_path / f"{flow.NAME}.tim").write_text(NEXTPNR_LOG)
    ice, stick = resolve_board("icebreaker"), resolve_board("icestick")
    hints = {}
    for board, mode in ((ice, "off"), (ice, "on"), (stick, "off")):
        with pytest.raises(DoesNotFitError) as err:
            flow._fail(board, "nextpnr-ice40", 1, tmp_path, tmp_path / "out.log", mode)
        hints[(board.name, mode)] = "--spram on puts the weights" in str(err.value)
    assert hints == {("icebreaker", "off"): True, ("icebreaker", "on"): False, ("icestick", "off"): False}


def test_design_too_big_for_icestick_names_resource_and_numbers(tmp_path, cache, capsys):
    f = tmp_path / "small.toml"
    f.write_text(S.dumps(small_spec()))
    assert main(["synth", "--config", str(f), "--board", "icestick", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not fit" in err and "iCE40HX1K" in err
    m = re.search(r"logic cells \(LUT4 \+ DFF\) \[ICESTORM_LC\]: needs (\d+), the iCE40HX1K has (\d+)", err)
    assert m, err
    needed, have = int(m.group(1)), int(m.group(2))
    assert have == 1280 and needed > have
    assert not (tmp_path / "out" / "report.json").exists()


def test_board_names():
    assert resolve_board("icebreaker").platform_class.__name__ == "ICEBreakerPlatform"
    assert resolve_board("ulx3s").platform_class.__name__ == "ULX3S_85F_Platform"
    assert resolve_board("ulx3s-45f").platform_class.__name__ == "ULX3S_45F_Platform"
    assert resolve_board("ICEStickPlatform").platform_class.__name__ == "ICEStickPlatform"
    assert resolve_board("icestick").device == "iCE40HX1K"
    assert resolve_board("ulx3s").goal_mhz() == 80.0 and resolve_board("icebreaker").goal_mhz() == 30.0
    assert resolve_board("icestick").goal_mhz() == 12.0  # other devices: the board clock
    with pytest.raises(UnknownBoardError) as e:
        resolve_board("icebreakr")
    msg = str(e.value)
    assert "unknown board 'icebreakr'" in msg and "icebreaker" in msg and "icestick" in msg and "ulx3s-85f" in msg
    with pytest.raises(UnsupportedBoardError, match="iCE40.*ECP5"):
        resolve_board("arty-a7-35").check_supported()


def test_unknown_board_on_the_command_line(capsys):
    assert main(["synth", "--config", "digits", "--board", "nosuchboard"]) == 2
    err = capsys.readouterr().err
    assert "unknown board 'nosuchboard'" in err and "icebreaker" in err


def _report(fmax: float) -> BuildReport:
    return BuildReport(
        spec="s", board="icebreaker", platform="ICEBreakerPlatform", device="iCE40UP5K", package="SG48", family="ice40",
        lanes=2, board_clock_mhz=12.0, target_mhz=30.0,
        resources=[Resource("ICESTORM_LC", "logic cells (LUT4 + DFF)", 1234, 5280), Resource("ICESTORM_RAM", "block RAM (4 kbit)", 0, 30)],
        clocks=[Clock("cd_sync.clk", fmax, 30.0)], stage_seconds={"synthesis": 61.0, "place and route": 20.4},
        options={"constraint_mhz": 30.0},
    )


def test_report_table():
    text = _report(27.46).table()
    lines = text.splitlines()
    row = next(ln for ln in lines if ln.startswith("logic cells"))
    assert row.split()[-3:] == ["1234", "5280", "23.4%"]
    assert next(ln for ln in lines if ln.startswith("block RAM")).split()[-3:] == ["0", "30", "0.0%"]
    clk = next(ln for ln in lines if ln.startswith("cd_sync.clk"))
    assert clk.split()[1:3] == ["27.5", "30"] and clk.endswith("MISSED by 2.5 MHz")
    assert "board clock 12 MHz" in text and "build time 81 s (synthesis 61 s, place and route 20 s)" in text
    assert len({ln.index("used") for ln in lines if ln.startswith("resource")}) == 1
    # columns line up: the 'available' numbers end where the header's word ends
    head = next(ln for ln in lines if ln.startswith("resource"))
    assert row.index("5280") + 4 == head.index("available") + len("available")
    good = _report(31.04)
    assert good.met and "met (+1.0 MHz)" in good.table() and "timing met" in good.timing_summary()
    bad = _report(27.46)
    assert not bad.met and "short by 2.5 MHz" in bad.timing_summary() and "WARNING" not in bad.table()
    slow = _report(10.0)
    assert "WARNING: Fmax below the board clock (12 MHz)" in slow.table() and "below the board clock" in slow.timing_summary()
    assert BuildReport.from_dict(json.loads(json.dumps(bad.to_dict()))) == bad


NEXTPNR_LOG = """Info: Packing constants..
Info: Device utilisation:
Info: 	         ICESTORM_LC:    3880/   1280   303%
Info: 	        ICESTORM_RAM:      18/     16   112%
Info: 	               SB_IO:       2/     96     2%
Info: 	               SB_GB:       2/      8    25%

Info: Placed 3 cells based on constraints.
ERROR: Failed to expand region (0, 0) |_> (13, 17) of 3880 ICESTORM_LCs
"""


def test_parsers():
    util = parse_utilisation_log(NEXTPNR_LOG)
    assert util == {"ICESTORM_LC": (3880, 1280), "ICESTORM_RAM": (18, 16), "SB_IO": (2, 96), "SB_GB": (2, 8)}
    assert overflowing(util) == [("ICESTORM_LC", 3880, 1280), ("ICESTORM_RAM", 18, 16)]
    err = DoesNotFitError("icestick", "iCE40HX1K", overflowing(util), util)
    assert "needs 3880, the iCE40HX1K has 1280" in str(err) and "block RAM" in str(err) and "needs 18" in str(err)
    assert "spram" not in str(err)
    stat = json.dumps({"design": {"num_cells_by_type": {"$scopeinfo": 3, "SB_LUT4": 10, "SB_DFF": 3, "SB_DFFE": 4, "SB_CARRY": 2}}})
    cells = yosys_cells(stat)
    assert cells == {"SB_LUT4": 10, "SB_DFF": 3, "SB_DFFE": 4, "SB_CARRY": 2}
    rows = resources_from("ice40", {"ICESTORM_LC": (12, 1280), "SB_GB": (0, 8)}, cells)
    assert [(r.name, r.used, r.available) for r in rows] == [("ICESTORM_LC", 12, 1280), ("yosys:SB_LUT4", 10, 1280), ("yosys:SB_DFF", 7, 1280), ("yosys:SB_CARRY", 2, 1280)]
    fmax = {"fmax": {"cd_sync.clk": {"achieved": 12.1, "constraint": 30.0}, "$PACKER_GND_NET_$glb_clk": {"achieved": 129.3, "constraint": 30.0}}}
    assert clocks_from(fmax) == [Clock("cd_sync.clk", 12.1, 30.0)]


def test_sweep_specs_and_outputs(tmp_path):
    s = sweep_spec("fell", 24)
    assert s.layers[0].size == 24 and s.learning.rule == "fell" and s.inputs == 64 and s.name == "digits-fell-h24"
    # a wide layer: the classifier's accumulator grows to its worst-case sum (the spec checks it)
    wide = sweep_spec("ell", 2048)
    clf = wide.layers[0].classifier
    assert clf.accumulator == (2048 * clf.weight.max_abs).bit_length() + 1 > S.load("digits").layers[0].classifier.accumulator
    rows = [
        {"rule": "ell", "hidden": 16, "lanes": 1, "fits": "yes", "logic_used": 4000, "logic_available": 5280, "ff_used": 1200, "bram_used": 9, "bram_available": 30, "spram_used": 1, "dsp_used": 3, "dsp_available": 8, "fmax_mhz": 21.5, "target_mhz": 30.0, "met": "no", "build_s": 90, "note": ""},
        {"rule": "ell", "hidden": 32, "lanes": 1, "fits": "no", "logic_used": 6100, "logic_available": 5280, "ff_used": "", "bram_used": "", "bram_available": "", "spram_used": "", "dsp_used": "", "dsp_available": "", "fmax_mhz": "", "target_mhz": "", "met": "", "build_s": "", "note": "logic cells: 6100/5280"},
    ]
    write_csv(rows, tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text().splitlines()[2].startswith("ell,32,1,no,6100,5280")
    md = markdown_table(rows, "icebreaker", "iCE40UP5K", "ICESTORM_LC")
    assert "| ell | 16 | 1 | yes | 4000/5280 | 1200 | 9/30 | 1 | 3/8 | 21.5 | 30.0 | no | 90 |  |" in md
    assert "| ell | 32 | 1 | no | 6100/5280 |" in md
    plot(rows, tmp_path / "s.png", "icebreaker", "ICESTORM_LC")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_cache_key_covers_design_board_options_and_tools():
    from localsnn.synth.flow import _design_key

    class Plan:
        def __init__(self, **files):
            self.files = {"localsnn.il": "module", "localsnn.pcf": "set_io", "build_localsnn.bat": "rem", **files}

    ice, ulx = resolve_board("icebreaker"), resolve_board("ulx3s")
    key = _design_key(Plan(), ice, {"lanes": 1}, {"yosys": "Yosys 0.70"})
    assert key == _design_key(Plan(), ice, {"lanes": 1}, {"yosys": "Yosys 0.70"})
    others = [
        _design_key(Plan(**{"localsnn.il": "module2"}), ice, {"lanes": 1}, {"yosys": "Yosys 0.70"}),
        _design_key(Plan(**{"localsnn.pcf": "set_io 2"}), ice, {"lanes": 1}, {"yosys": "Yosys 0.70"}),
        _design_key(Plan(), ulx, {"lanes": 1}, {"yosys": "Yosys 0.70"}),
        _design_key(Plan(), ice, {"lanes": 2}, {"yosys": "Yosys 0.70"}),
        _design_key(Plan(), ice, {"lanes": 1}, {"yosys": "Yosys 0.71"}),
    ]
    assert len({key, *others}) == 6
    # the Windows script is not part of the design
    assert _design_key(Plan(**{"build_localsnn.bat": "other"}), ice, {"lanes": 1}, {"yosys": "Yosys 0.70"}) == key
