"""The second simulator: Icarus Verilog (4-state, event-driven) runs the same co-simulations as
Verilator, equal to golden value for value and to Verilator clock for clock, in both of its
language modes (cocotb's ``-g2012`` and ``-g2005``); an X or Z in what the testbench reads is a
mismatch, never a value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from localsnn.data import load
from localsnn.golden import Golden
from localsnn.sim.configs import matrix_spec, random_pixels, random_spec
from localsnn.sim.cosim import cosimulate, generate_verilog
from localsnn.sim.drivers import INPUTS

#: the infrastructure's cocotb module (it also holds the X/Z test)
TB = Path(__file__).parent / "infra_tb.py"


def _icarus_or_skip():
    from localsnn.sim.runner import IcarusNotFound, _icarus_versions

    try:
        _icarus_versions()
    except IcarusNotFound as err:  # only where it truly is missing (.ci/run installs it)
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def _digit_samples(spec, ds, n, offset):
    x = Golden(spec).quantize(ds.x_train[offset : offset + n], ds.max_value)
    return [(x[i], int(ds.y_train[offset + i])) for i in range(n)]


def test_yosys_time_zero_trigger_is_an_initial_statement_and_every_input_is_driven():
    """rtl.generate.trigger_by_initial: every module's trigger register is declared without an
    initialiser and set by an ``initial`` statement (a declaration initialiser makes no event
    in SystemVerilog, IEEE 1800-2017 6.8); and the drivers' reset drives every input of the
    top, so that nothing is Z."""
    from localsnn.rtl.generate import _ports
    from localsnn.rtl.top import Network

    spec = matrix_spec("ell", "rate", "two")
    text, _ = generate_verilog(spec, 8)
    modules = len(re.findall(r"^module ", text, re.M))
    declared = re.findall(r"^\s*reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ )(.*);$", text, re.M)
    assert len(declared) == modules > 1 and all(rest == "" for _, rest in declared)
    assert len(re.findall(r"^\s*initial \\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ = 1'b0;$", text, re.M)) == modules
    inputs = {p["name"] for p in _ports(Network(spec, lanes=8)) if p["direction"] == "in"} - {"clk", "rst"}
    assert inputs == set(INPUTS)


#: (rule, encoding, net, lanes, spram): each rule once, on the matrix's designs (their Verilator
#: builds are the matrix's and the SPRAM test's), and a random spec below. The SPRAM build at 8
#: lanes has padding lanes in its words: the host writes them with zeros (chip.load_host_init),
#: else they are X in Icarus and the X stalls the chip (docs/cosim.md, "Memories without initial
#: contents")
DESIGNS = [("ell", "rate", "digits", 8, False), ("fell", "latency", "two", 8, False),
           ("decolle", "direct", "two", 8, False), ("ell", "rate", "two", 8, True)]


@pytest.mark.parametrize("rule, encoding, net, lanes, spram", DESIGNS,
                         ids=[f"{n}-{r}-{e}-L{l}{'-spram' if s else ''}" for r, e, n, l, s in DESIGNS])
def test_icarus_equals_golden_and_verilator_cycle_for_cycle(digits, rule, encoding, net, lanes, spram):
    """Learning on, every step compared with golden in Icarus as in Verilator, and every
    phase of every step takes the same clocks in both. The digits ELL net also in -g2005."""
    _icarus_or_skip()
    spec = matrix_spec(rule, encoding, net)
    samples = _digit_samples(spec, digits, 2, offset=lanes)
    icarus = cosimulate(spec, samples, lanes=lanes, spram=spram, simulator="icarus")
    verilator = cosimulate(spec, samples, lanes=lanes, spram=spram)
    assert icarus.samples == 2 and icarus.compared == verilator.compared > 0
    assert icarus.decisions == verilator.decisions
    assert icarus.step_cycles == verilator.step_cycles and icarus.phase_cycles == verilator.phase_cycles
    assert icarus.host_loaded == verilator.host_loaded
    if net == "digits":
        old = cosimulate(spec, samples, lanes=lanes, simulator="icarus", build_args=["-g2005"])
        assert old.build_dir != icarus.build_dir
        assert old.step_cycles == verilator.step_cycles and old.decisions == verilator.decisions


#: the random spec co-simulated in Icarus (chosen for a multi-layer net of moderate size)
RANDOM_SEED = 3


def test_icarus_on_a_random_spec():
    """A random spec (``sim.configs.random_spec``; the seed's draw: several layers, lanes that
    do not divide them) with idle and backpressure: Icarus = golden, and Verilator's clocks."""
    _icarus_or_skip()
    spec, lanes = random_spec(RANDOM_SEED)
    samples = random_pixels(spec, 2, RANDOM_SEED)
    icarus = cosimulate(spec, samples, lanes=lanes, idle=0.2, stall=0.2, seed=1, simulator="icarus")
    verilator = cosimulate(spec, samples, lanes=lanes, idle=0.2, stall=0.2, seed=1)
    assert icarus.samples == 2 and icarus.step_cycles == verilator.step_cycles
    assert icarus.decisions == verilator.decisions


def test_x_and_z_in_what_the_testbench_reads_are_reported_by_name(tmp_path):
    """drivers.read: an output never assigned (X) and one driven from an undriven input (Z)
    raise UnknownValue naming the signal; once driven, the value reads as a number."""
    _icarus_or_skip()
    from localsnn.sim import runner

    text = "module xz(input a, output y, output [3:0] q);\n  reg [3:0] r;\n  assign y = a;\n  assign q = r;\nendmodule\n"
    res = runner.run_cocotb(text, "xz", TB, tmp_path, testcase="test_unknown_values_are_named",
                             extra_env={"INFRA_XZ": "1"}, simulator="icarus")
    assert res.passed and [t.name for t in res.tests] == ["test_unknown_values_are_named"]
