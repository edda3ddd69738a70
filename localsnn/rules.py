"""The on-chip learning rules: one entry per rule, that everything else iterates.

A spec names its rule in ``learning.rule``; :attr:`localsnn.spec.NetworkSpec.rule` is this
module's entry for it. The spec's checks, the golden model, the RTL, the CLI, the benchmarks,
the synthesis sweep and the co-simulation's test configurations read the entry's properties
(does the rule learn, which neuron model do its layers run, does it keep eligibility traces,
which shipped specs run it) instead of comparing names; the code of a rule itself lives in its
own places (docs/architecture.md, "Where a change goes"):

- golden: :mod:`localsnn.golden.model` (the integer updates),
- rtl: :mod:`localsnn.rtl.lif` (a layer of ``lif`` neurons) or :mod:`localsnn.rtl.decolle`,
- train: the float learner of the same name (:mod:`localsnn.train.registry`).

Pure Python, importing nothing of the project: the spec imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from localsnn.errors import UnknownNameError


@dataclass(frozen=True)
class Rule:
    """One on-chip learning rule.

    name
        The spec's ``learning.rule``, and the name of its float learner in
        :mod:`localsnn.train.registry`.
    summary
        One line: what it does and where it comes from (the CLI's and the docs' lists).
    learns
        Whether the chip updates weights at all (``none`` does not: inference only).
    neuron
        The neuron model (:data:`localsnn.spec.NEURON_MODELS`) every layer must run under this
        rule; ``None``: any. The model decides the error's path: ``lif`` layers feed their error
        back through their spiking classifier's weights (Ma et al. eq. 6), ``decolle``
        layers through their fixed random readout (Kaiser et al. eq. 7-8).
    traces
        Whether the presynaptic factor of an update is a per-synapse eligibility trace in the
        ``learning.trace`` format (FELL, Ma et al. eq. 12-14) rather than the input itself.
    digits_spec
        The shipped 8x8-digits spec whose formats suit the rule (the co-simulation matrix, the
        synthesis sweep and the RTL benchmark start from it).
    mnist_spec
        The shipped MNIST spec that runs it (the golden benchmark), if any.
    """

    name: str
    summary: str
    learns: bool
    neuron: str | None
    traces: bool
    digits_spec: str
    mnist_spec: str | None = None


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("none", "no learning on chip: inference with the weights it was given", learns=False, neuron=None, traces=False, digits_spec="digits"),
        Rule("ell", "efficient local learning (Ma et al., eq. 4-7): the input itself is the presynaptic factor",
             learns=True, neuron="lif", traces=False, digits_spec="digits", mnist_spec="mnist"),
        Rule("fell", "ELL with per-synapse eligibility traces as the presynaptic factor (Ma et al., eq. 12-14)",
             learns=True, neuron="lif", traces=True, digits_spec="digits-fell", mnist_spec="mnist-fell"),
        Rule("decolle", "deep continuous local learning (Kaiser et al.): random readouts, traces P",
             learns=True, neuron="decolle", traces=False, digits_spec="digits-decolle"),
    )
}

#: the rules' names, in the registry's order
NAMES: tuple[str, ...] = tuple(RULES)
#: the rule that does not learn (a spec for inference only)
NONE = "none"
#: a spec's ``learning.rule`` where it names none
DEFAULT = "ell"


def rule(name: str) -> Rule:
    """The entry of ``name``; an ``UnknownNameError`` (a ``KeyError``) naming the allowed rules if there is none (the spec
    reports an unknown ``learning.rule`` as a ``SpecError`` before anything looks it up)."""
    try:
        return RULES[name]
    except KeyError:
        raise UnknownNameError(f"unknown learning rule {name!r}; allowed: {', '.join(NAMES)}") from None


def names(*, learns: bool | None = None, neuron: str | None = None, mnist: bool = False) -> tuple[str, ...]:
    """The names of the rules with the given properties, in the registry's order (``neuron``:
    rules whose layers run that model, or any model)."""
    return tuple(r.name for r in RULES.values()
                 if (learns is None or r.learns == learns)
                 and (neuron is None or r.neuron in (None, neuron))
                 and (not mnist or r.mnist_spec is not None))
