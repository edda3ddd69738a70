"""A layer's control sequencer: its phases' cycle counters by name, and the chain of phases.

A layer's step is a chain of phases (``chip.PHASES[engine]``: FWD, COMPACT, CFWD, ...), most of
them one :class:`~localsnn.rtl.loop.Loop` each. The control FSM holds one state per phase (and
a few one-clock states that start a loop or publish a result); every state of a phase counts
its clocks in the phase's counter ``pc_<PHASE>``, which the layer's ``phase_cycles`` port (the
registers ``PHASE_BASE + LAYER_REGIONS * layer + k``) shows for the last step.

:meth:`Phases.run` writes the common state, "count, and when the loop is done go on"; the
layer's control method writes only what differs (the branches on ``learn``, ``err_any``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amaranth import Cat, Signal


class Phases:
    """The phase counters of one layer, created in ``names`` order (the bus's order) and wired
    to ``outputs`` (the layer's ``phase_cycles``); used inside the layer's ``with m.FSM()``."""

    def __init__(self, m, names: Sequence[str], bits: int, outputs) -> None:
        self.m = m
        self.names = tuple(names)
        self.counters = {p: Signal(bits, name=f"pc_{p}") for p in self.names}
        for k, p in enumerate(self.names):
            m.d.comb += outputs[k].eq(self.counters[p])

    def clear(self) -> None:
        """Zero every counter (at the start of a step)."""
        for sig in self.counters.values():
            self.m.d.sync += sig.eq(0)

    def count(self, phase: str) -> None:
        """One more clock of ``phase`` (in the current state)."""
        sig = self.counters[phase]
        self.m.d.sync += sig.eq(sig + 1)

    def run(self, state: str, done, then: Callable[[], None], *, phase: str | None = None) -> None:
        """The state ``state`` of phase ``phase`` (default: the state's name): it counts its
        clocks and, in the clock ``done`` is high, calls ``then`` (which starts what follows and
        names the next state)."""
        m = self.m
        with m.State(state):
            self.count(phase or state)
            with m.If(done):
                then()

    def together(self, state: str, loops: dict, then: Callable[[], None]) -> None:
        """The state ``state`` of phases that run side by side (``{phase: loop}``, started
        together by the state before: phases that share no memory port, such as ELL's CUPD and
        HUPD): each phase counts the clocks its loop is busy; ``then`` is called in the clock
        the last of them is done."""
        m = self.m
        with m.State(state):
            for phase, lp in loops.items():
                with m.If(lp.busy):
                    self.count(phase)
            with m.If(~Cat(*[lp.busy for lp in loops.values()]).any()):
                then()

    def go(self, state: str, *starts) -> Callable[[], None]:
        """A ``then`` for :meth:`run`: pulse the ``starts`` (a loop's ``start``, the layer's
        ``done``), and go to ``state``."""
        def then() -> None:
            for s in starts:
                self.m.d.comb += s.eq(1)
            self.m.next = state
        return then
