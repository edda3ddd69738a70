"""The hardware twin of :class:`localsnn.golden.lfsr.LFSR`.

The register holds the last draw. One golden *draw* advances the Galois register ``width``
steps: the new state is ``A**width @ state`` over GF(2), a fixed XOR network computed from
golden's matrices (``golden.lfsr._power``), so a draw takes one clock. ``draws(k)`` gives the
next ``k`` draws at once (``k`` networks) for lanes that need one each, and a jump by a fixed
number of draws (skipping draws that are not used, as golden does) is one more network.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from localsnn.golden.lfsr import _power


def gf2_apply(cols: tuple[int, ...], state: Value) -> Value:
    """The XOR network computing ``M @ state`` for the GF(2) matrix with columns ``cols``."""
    width = len(cols)
    bits = []
    for r in range(width):
        taps = [state[b] for b in range(width) if (cols[b] >> r) & 1]
        bits.append(Cat(*taps).xor() if taps else Const(0, 1))
    return Cat(*bits)


class LFSR(wiring.Component):
    """``width``-bit LFSR stream, reset to ``seed``.

    Ports: ``state`` (the last draw), ``next`` (the next draw; ``draw(k)`` builds the ``k``-th), and
    inputs ``advance`` (step by ``advance_by`` draws, which must be one of ``steps``), ``load``
    / ``load_value`` (set the state: the seed register). ``advance`` and ``load`` take effect at
    the next clock edge; ``load`` wins.
    """

    def __init__(self, width: int, seed: int, steps: tuple[int, ...] = (1,)) -> None:
        self._width = width
        self._seed = seed
        self._steps = tuple(sorted(set(steps)))
        super().__init__({
            "state": Out(width, init=seed),
            "next": Out(width),  # the next draw, from the current state (combinational)
            "advance": In(1),
            "advance_by": In(range(max(self._steps) + 1)),
            "load": In(1),
            "load_value": In(width),
        })

    @property
    def width(self) -> int:
        return self._width

    def draw(self, k: int) -> Value:
        """The ``k``-th next draw (k >= 1) from the current state, combinational."""
        return gf2_apply(_power(self._width, self._width * k), self.state)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.next.eq(self.draw(1))
        with m.If(self.load):
            m.d.sync += self.state.eq(self.load_value)
        with m.Elif(self.advance):
            with m.Switch(self.advance_by):
                for n in self._steps:
                    with m.Case(n):
                        m.d.sync += self.state.eq(self.next if n == 1 else self.draw(n))
        return m


__all__ = ["LFSR", "gf2_apply"]

