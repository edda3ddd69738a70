"""One map from a rule's name to the learner that builds it.

Each learner module declares ``RULES = {name: build}`` with ``build(spec, rule, options)``
(:mod:`localsnn.train.lif`: ``bptt``, ``ell``, ``bell``, ``fell``, ``fell-kp``;
:mod:`localsnn.train.decolle`: ``decolle``; :mod:`localsnn.train.tlbptt`: ``tlbptt``); this
module merges them. Convolutional nets given as an architecture string (``12c5-p2-64c5-p2-10``)
are built by :mod:`localsnn.train.lif`'s ``build_arch``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from localsnn.train.api import Learner, RuleOptions

from localsnn.errors import LocalsnnError
from localsnn.spec import NetworkSpec

#: the modules whose ``RULES`` are merged, in the order their names are listed
MODULES = ("localsnn.train.lif", "localsnn.train.decolle", "localsnn.train.tlbptt")
#: the module whose ``build_arch(arch, input_shape, timesteps, rule, options, tau, theta)``
#: builds convolutional nets from an architecture string
ARCH_MODULE = "localsnn.train.lif"


class UnknownRule(LocalsnnError, ValueError):
    """A rule name no learner module declares."""


def _modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in MODULES]


def rules() -> dict[str, tuple[ModuleType, Callable]]:
    """``{rule name: (module, build)}`` over every learner module."""
    out: dict[str, tuple[ModuleType, Callable]] = {}
    for mod in _modules():
        for name, build in mod.RULES.items():
            if name in out:  # pragma: no cover - a programming error in the learner modules
                raise RuntimeError(f"rule {name!r} is declared by both {out[name][0].__name__} and {mod.__name__}")
            out[name] = (mod, build)
    return out


def names() -> list[str]:
    return list(rules())


def lookup(rule: str) -> tuple[ModuleType, Callable]:
    table = rules()
    if rule not in table:
        raise UnknownRule(f"unknown rule {rule!r}; allowed: {', '.join(table)}")
    return table[rule]


def build(rule: str, spec: NetworkSpec, options: RuleOptions | None = None) -> Learner:
    """The learner of ``rule`` for the fully connected net of ``spec``."""
    _, ctor = lookup(rule)
    return ctor(spec, rule, options if options is not None else RuleOptions())


def arch_rules() -> list[str]:
    """The rules that can build a net from an architecture string."""
    mod = importlib.import_module(ARCH_MODULE)
    return list(mod.RULES)


def build_arch(rule: str, arch: str, input_shape: tuple[int, ...], timesteps: int, options: RuleOptions, tau: float, theta: float) -> Learner:
    """The learner of ``rule`` for the (convolutional) net ``arch``."""
    mod, _ = lookup(rule)
    if mod.__name__ != ARCH_MODULE:
        raise UnknownRule(f"rule {rule!r} has no nets from an architecture string (--arch); rules with --arch: {', '.join(arch_rules())}")
    return mod.build_arch(arch, input_shape, timesteps, rule, options, tau, theta)
