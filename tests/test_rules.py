"""The rule registry (``localsnn.rules``): one entry per on-chip rule, that the rest iterates."""

from __future__ import annotations

import ast
import importlib
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


def _named_rules(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """``(line, name)`` of every string constant in ``path`` that is a rule's name, except
    docstrings and the ``rule=`` of a ``LearningSpec(...)`` (a spec written in Python)."""
    tree = ast.parse(path.read_text())
    allowed = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body and isinstance(body[0], ast.Expr):
            allowed.add(id(body[0].value))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "LearningSpec":
            allowed.update(id(k.value) for k in node.keywords if k.arg == "rule")
    return sorted((node.lineno, node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in names and id(node) not in allowed)


def test_a_rule_is_named_only_in_its_registry_entries_and_its_own_modules():
    """golden, rtl, sim, synth, the spec, the CLI and the training tools read the entries'
    properties (:mod:`localsnn.rules` on chip, :mod:`localsnn.train.registry` in floats); a rule's
    name appears as a string only there and in the float learners that build it. (``decolle`` is
    also a neuron model, :data:`localsnn.spec.NEURON_MODELS`: that name is not counted.)"""
    from localsnn.train import registry

    names = (set(R.NAMES) | set(registry.ENTRIES)) - set(S.NEURON_MODELS)
    own = {"localsnn.rules", "localsnn.train.registry", *registry.MODULES}
    hits, scanned = [], 0
    for pkg in ("localsnn", "localsnn.golden", "localsnn.rtl", "localsnn.sim", "localsnn.synth", "localsnn.train"):
        folder = Path(importlib.import_module(pkg).__file__).parent
        for path in sorted(folder.glob("*.py")):
            module = pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"
            if module in own:
                continue
            scanned += 1
            hits += [f"{module}:{n}: {name!r}" for n, name in _named_rules(path, names)]
    assert scanned > 50
    assert not hits, "\n".join(hits)


def test_the_name_check_finds_a_rule_named_in_code(tmp_path):
    """The check above can fail: a comparison, a list and a dict key are found; a docstring, a
    comment and a spec's ``rule=`` are not."""
    src = tmp_path / "m.py"
    src.write_text('''"""Module doc naming "ell"."""
def f(rule):  # "fell" in a comment
    """ell in a docstring"""
    S.LearningSpec(rule="ell")
    if rule == "ell":
        return ("fell", "decolle")
    return {"tlbptt": 1}[rule]
''')
    assert _named_rules(src, {"ell", "fell", "tlbptt"}) == [(5, "ell"), (6, "fell"), (7, "tlbptt")]
