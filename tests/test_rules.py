"""The rule registry (``localsnn.rules``): one entry per on-chip rule, that the rest iterates."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from localsnn import chip
from localsnn import rules as R
from localsnn import spec as S
from localsnn.errors import SpecError
from localsnn.sim import configs


def test_the_spec_and_the_test_configurations_iterate_the_registry():
    assert S.RULES == R.NAMES == configs.RULES
    assert R.NONE in R.NAMES and not R.rule(R.NONE).learns and R.DEFAULT in R.NAMES
    with pytest.raises(KeyError, match="allowed: " + ", ".join(R.NAMES)):
        R.rule("hebb")


@pytest.mark.parametrize("name", R.NAMES)
def test_every_entry_holds(name):
    """Its shipped specs load and run it; its neuron model is the one the spec demands; a learning
    rule has the float learner of the same name; its properties reach the spec."""
    from localsnn.train import registry

    r = R.rule(name)
    spec = S.load(r.digits_spec).with_rule(name)
    assert spec.rule is r
    if r.mnist_spec:
        assert S.load(r.mnist_spec).rule is r
    if r.learns:
        registry.lookup(name)
        assert spec.update_shifts()
    else:
        assert spec.update_shifts() == {}
    if r.neuron is not None:
        assert {layer.neuron.model for layer in spec.layers} == {r.neuron}
        other = next(m for m in S.NEURON_MODELS if m != r.neuron)
        bad = configs.matrix_spec(next(n for n in R.NAMES if R.rule(n).neuron == other), "direct", "digits")
        with pytest.raises(SpecError, match=f"learning.rule {name!r} needs {r.neuron!r} neurons"):
            bad.with_rule(name)
    # the chip keeps eligibility traces (memories e, ce) exactly where the rule says so
    names = {entry["name"] for entry in chip.layer_memory_map(spec, 0, 1, False)}
    assert {"layer0.e", "layer0.clf_e"} & names == ({"layer0.e", "layer0.clf_e"} if r.traces else set())


#: a rule named in a comparison or a list: ``rule == "x"``, ``rule in ("x", ...)``, ``{"x": ...}[rule]``
_NAMED = re.compile(r"""rule\w*\s*(?:==|!=|\bin\b)\s*[("'\[]|\{\s*["'](?:%s)["']\s*:""" % "|".join(map(re.escape, R.NAMES)))


def test_no_module_outside_the_registry_compares_rule_names():
    """golden, rtl, sim, synth and the spec/CLI read the entry's properties; only the float
    learners (``train/``, named after the rules they learn with) and the registry name rules."""
    hits, scanned = [], 0
    for pkg in ("localsnn", "localsnn.golden", "localsnn.rtl", "localsnn.sim", "localsnn.synth"):
        folder = Path(importlib.import_module(pkg).__file__).parent
        for path in sorted(folder.glob("*.py")):
            if pkg == "localsnn" and path.name == "rules.py":
                continue
            scanned += 1
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _NAMED.search(line.split("#", 1)[0]):
                    hits.append(f"{pkg}/{path.name}:{n}: {line.strip()}")
    assert scanned > 40
    assert not hits, "\n".join(hits)
