"""The hardware twin of :class:`localsnn.golden.lfsr.LFSR`.

The register holds the last draw. One golden *draw* advances the Galois register ``width``
steps: the new state is ``A**width @ state`` over GF(2), a fixed XOR network computed from
golden's matrices (``golden.lfsr.power``), so a draw takes one clock. That network is the
costly part (about 500 two-input XORs at 32 bits), so streams that never draw in the same clock
share one: :func:`shared_draw` builds it once over a multiplexer of their states and feeds the
result to each of them (a layer's ``round:<l>`` and ``round:<l>.clf`` streams draw in different
phases). Draws golden skips are skipped one per clock, through the same network.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from localsnn.errors import BadValueError
from localsnn.golden.lfsr import power


def gf2_apply(cols: tuple[int, ...], state: Value) -> Value:
    """The XOR network computing ``M @ state`` for the GF(2) matrix with columns ``cols``."""
    width = len(cols)
    bits = []
    for r in range(width):
        taps = [state[b] for b in range(width) if (cols[b] >> r) & 1]
        bits.append(Cat(*taps).xor() if taps else Const(0, 1))
    return Cat(*bits)


def draw_network(width: int, state: Value) -> Value:
    """The next draw from ``state``: ``A**width @ state``."""
    return gf2_apply(power(width, width), state)


class LFSR(wiring.Component):
    """``width``-bit LFSR stream, reset to ``seed``.

    Ports: ``state`` (the last draw), ``next`` (the next draw, combinational), and inputs
    ``advance`` (take the next draw), ``load`` / ``load_value`` (set the state: the seed
    register). ``advance`` and ``load`` take effect at the next clock edge; ``load`` wins.

    With ``shared=True`` the stream has no draw network of its own: ``next`` is an input that
    :func:`shared_draw` drives with the draw of this stream's state whenever it is selected.
    """

    def __init__(self, width: int, seed: int, *, shared: bool = False) -> None:
        self._width = width
        self._seed = seed
        self._shared = shared
        super().__init__({
            "state": Out(width, init=seed),
            "next": In(width) if shared else Out(width),
            "advance": In(1),
            "load": In(1),
            "load_value": In(width),
        })

    @property
    def width(self) -> int:
        return self._width

    @property
    def shared(self) -> bool:
        return self._shared

    def elaborate(self, platform):
        m = Module()
        if not self._shared:
            m.d.comb += self.next.eq(draw_network(self._width, self.state))
        with m.If(self.load):
            m.d.sync += self.state.eq(self.load_value)
        with m.Elif(self.advance):
            m.d.sync += self.state.eq(self.next)
        return m


def shared_draw(m: Module, streams: list[LFSR], select: Value, name: str = "draw") -> Value:
    """One draw network for ``streams`` (each built with ``shared=True``): the next draw of
    ``streams[select]``, fed to every stream's ``next``; only the selected one may advance."""
    width = streams[0].width
    if any(not s.shared or s.width != width for s in streams):
        raise BadValueError("shared_draw needs streams of one width, each built with shared=True")
    draw = Signal(width, name=name)
    m.d.comb += draw.eq(draw_network(width, Array([s.state for s in streams])[select]))
    for s in streams:
        m.d.comb += s.next.eq(draw)
    return draw


__all__ = ["LFSR", "draw_network", "gf2_apply", "shared_draw"]
