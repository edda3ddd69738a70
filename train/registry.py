"""One map from a rule's name to the learner that builds it.

:data:`ENTRIES` holds one :class:`FloatRule` per float rule: its name, the learner module that
builds it, and the properties the CLI and the training benchmark read (how a training step's
memory grows with ``T``, whether ``localsnn bench train`` runs it). The table imports nothing
(no torch), so the command line can list the rules before torch is loaded. Each learner module
declares ``RULES = {name: build}`` with ``build(spec, rule, options)`` for exactly the entries
that name it (:func:`rules` checks both agree). Convolutional nets given as an architecture
string (``12c5-p2-64c5-p2-10``) are built by :data:`ARCH_MODULE`'s ``build_arch``.

A new float rule: its entry here, its learner module (``RULES``), its tests and docs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from localsnn.errors import LocalsnnError
from localsnn.spec import NetworkSpec

if TYPE_CHECKING:  # the learners need torch: imported where they are built
    from localsnn.train.api import Learner, RuleOptions

#: how a training step's memory grows with the window ``T``
MEMORY = {
    "window": "keeps the whole window's history: grows with T",
    "online": "updates at every step from the present state: independent of T",
    "truncated": "keeps the last k steps: independent of T (grows with k)",
}


@dataclass(frozen=True)
class FloatRule:
    """One float learning rule.

    name
        ``localsnn train --rule NAME``; an on-chip rule (:mod:`localsnn.rules`) has the float
        learner of its own name.
    module
        The learner module that builds it (its ``RULES`` maps the name to ``build``).
    summary
        One line: what it is and where it comes from.
    memory
        A key of :data:`MEMORY`: the benchmark's memory goal for it.
    traces
        Whether it keeps per-synapse eligibility traces (FELL's presynaptic factor; the
        benchmark compares its step memory with them).
    bench
        Whether ``localsnn bench train`` runs it by default (a variant of a rule already in the
        table is left out).
    throughput_goal
        Whether the benchmark checks its throughput against SpikingJelly's BPTT (the rules
        whose speed the project promises: ELL, DECOLLE).
    """

    name: str
    module: str
    summary: str
    memory: str
    traces: bool = False
    bench: bool = True
    throughput_goal: bool = False

    def __post_init__(self) -> None:
        if self.memory not in MEMORY:  # pragma: no cover - a programming error in the table
            raise ValueError(f"{self.name}: memory {self.memory!r} is not one of {', '.join(MEMORY)}")


_LIF, _DECOLLE, _TLBPTT = "localsnn.train.lif", "localsnn.train.decolle", "localsnn.train.tlbptt"

#: every float rule, in the order the CLI and the benchmark list them
ENTRIES: dict[str, FloatRule] = {
    e.name: e
    for e in (
        FloatRule("bptt", _LIF, "global BPTT of the whole net through the window (Ma et al.'s baseline)", memory="window"),
        FloatRule("ell", _LIF, "efficient local learning (Ma et al., eq. 4-7), updates every step", memory="online", throughput_goal=True),
        FloatRule("bell", _LIF, "ELL's local losses, BPTT within each layer through the window (Ma et al.)", memory="window"),
        FloatRule("fell", _LIF, "ELL with per-synapse eligibility traces (Ma et al., eq. 12-14)", memory="online", traces=True),
        FloatRule("fell-kp", _LIF, "FELL with a learned feedback matrix (Kolen-Pollack, Ma et al., eq. 15-16)", memory="online", traces=True, bench=False),
        FloatRule("decolle", _DECOLLE, "deep continuous local learning (Kaiser et al.): random readouts, traces P", memory="online", throughput_goal=True),
        FloatRule("tlbptt", _TLBPTT, "truncated local BPTT (Guo et al.): local losses, k steps kept", memory="truncated"),
    )
}
#: the modules whose ``RULES`` are merged, in the order their names are listed
MODULES: tuple[str, ...] = tuple(dict.fromkeys(e.module for e in ENTRIES.values()))
#: the module whose ``build_arch(arch, input_shape, timesteps, rule, options, tau, theta)``
#: builds convolutional nets from an architecture string
ARCH_MODULE = _LIF


class UnknownRule(LocalsnnError, ValueError):
    """A rule name no learner module declares."""


def _modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in MODULES]


def rules() -> dict[str, tuple[ModuleType, Callable]]:
    """``{rule name: (module, build)}`` over every entry (imports the learners, and torch)."""
    out: dict[str, tuple[ModuleType, Callable]] = {}
    for mod in _modules():
        mine = [e.name for e in ENTRIES.values() if e.module == mod.__name__]
        if list(mod.RULES) != mine:  # pragma: no cover - a programming error in the learner modules
            raise RuntimeError(f"{mod.__name__} builds {list(mod.RULES)}, its entries in {__name__} are {mine}")
        out.update((name, (mod, build)) for name, build in mod.RULES.items())
    return {name: out[name] for name in ENTRIES}


def names(**properties) -> list[str]:
    """The rules' names, in :data:`ENTRIES`' order, with the given properties (e.g.
    ``bench=True``, ``memory="online"``); imports no learner."""
    return [e.name for e in ENTRIES.values() if all(getattr(e, k) == v for k, v in properties.items())]


def entry(rule: str) -> FloatRule:
    if rule not in ENTRIES:
        raise UnknownRule(f"unknown rule {rule!r}; allowed: {', '.join(ENTRIES)}")
    return ENTRIES[rule]


def lookup(rule: str) -> tuple[ModuleType, Callable]:
    entry(rule)
    return rules()[rule]


def build(rule: str, spec: NetworkSpec, options: RuleOptions | None = None) -> Learner:
    """The learner of ``rule`` for the fully connected net of ``spec``."""
    from localsnn.train.api import RuleOptions

    _, ctor = lookup(rule)
    return ctor(spec, rule, options if options is not None else RuleOptions())


def arch_rules() -> list[str]:
    """The rules that can build a net from an architecture string."""
    return [e.name for e in ENTRIES.values() if e.module == ARCH_MODULE]


def build_arch(rule: str, arch: str, input_shape: tuple[int, ...], timesteps: int, options: RuleOptions, tau: float, theta: float) -> Learner:
    """The learner of ``rule`` for the (convolutional) net ``arch``."""
    mod, _ = lookup(rule)
    if mod.__name__ != ARCH_MODULE:
        raise UnknownRule(f"rule {rule!r} has no nets from an architecture string (--arch); rules with --arch: {', '.join(arch_rules())}")
    return mod.build_arch(arch, input_shape, timesteps, rule, options, tau, theta)
