"""Fixed-point arithmetic as Amaranth expressions: the hardware twins of ``golden/fixed.py``.

Each function builds combinational logic that computes, for every input, exactly the integer
the golden model computes (the unit tests hold one against the other):

* :func:`shift_round`  ``v / 2**s`` rounded ``floor`` / ``nearest`` / ``stochastic``
* :func:`fit`          saturate or wrap into a :class:`~localsnn.spec.FixedFormat`, with an
  overflow flag (so the hardware can count what golden counts)

Shift amounts may be constants or run-time values (the learning-rate shift register).
"""

from __future__ import annotations

from amaranth import Const, Mux, Shape, Value, signed, unsigned

from localsnn.errors import BadValueError
from localsnn.spec import FixedFormat


def fmt_shape(fmt: FixedFormat) -> Shape:
    """The Amaranth shape of a format's integers."""
    return signed(fmt.width) if fmt.signed else unsigned(fmt.width)


def shift_round(v, s, mode: str, rand=None) -> Value:
    """``R(v, s)``: ``v >> s`` (floor), ``(v + 2**(s-1)) >> s`` (nearest) or ``(v + (rand mod
    2**s)) >> s`` (stochastic). ``s`` is an int (``s <= 0`` is an exact left shift) or an
    unsigned run-time value (then ``s >= 0``)."""
    v = Value.cast(v)
    if isinstance(s, int):
        if s <= 0:
            return v << (-s)
        if mode == "floor":
            return v >> s
        if mode == "nearest":
            return (v + (1 << (s - 1))) >> s
        if mode == "stochastic":
            return (v + Value.cast(rand)[:s]) >> s
        raise BadValueError(f"unknown rounding mode {mode!r}")
    return _rounding_sum(v, s, mode, rand) >> Value.cast(s)


def _rounding_sum(v: Value, s, mode: str, rand) -> Value:
    """``v + h`` of ``R(v, s) = (v + h) >> s`` for a run-time shift ``s``: ``h`` = 0 (floor),
    ``2**(s-1)`` (nearest), ``rand mod 2**s`` (stochastic)."""
    s = Value.cast(s)
    if mode == "floor":
        return v
    if mode == "nearest":
        # 2**(s-1) (0 when s == 0), kept to len(v) + 1 bits: where s - 1 >= len(v) any half of
        # at least 2**len(v) gives the same result, 0 (|v| < 2**(len(v) - 1) < 2**s / 4), so
        # the bits above fold into bit len(v) instead of being cut off (which rounded down)
        full = (Const(1, 64) << s) >> 1
        n = len(v)
        half = full[: n + 1] | (Mux(full[n + 1 :].any(), 1, 0) << n) if n + 1 < 64 else full
        return v + half.as_unsigned()
    if mode == "stochastic":
        rand = Value.cast(rand)
        mask = (Const(1, len(rand) + 1) << s) - 1
        return v + (rand & mask[: len(rand)])
    raise BadValueError(f"unknown rounding mode {mode!r}")


def fit(v, fmt: FixedFormat) -> tuple[Value, Value]:
    """Bring ``v`` into ``fmt`` (saturate or wrap). Returns ``(value, overflowed)``; ``value``
    has the format's shape."""
    v = Value.cast(v)
    lo, hi = fmt.min_int, fmt.max_int
    shape = fmt_shape(fmt)
    too_high = v > hi
    too_low = v < lo
    over = too_high | too_low
    low_bits = v[: fmt.width]
    wrapped = low_bits.as_signed() if fmt.signed else low_bits.as_unsigned()
    if fmt.overflow == "saturate":
        value = Mux(too_high, Const(hi, shape), Mux(too_low, Const(lo, shape), wrapped))
    else:
        value = wrapped
    return value, over


def narrow(v, s, fmt: FixedFormat, rand=None) -> tuple[Value, Value]:
    """``fit_F(R_F(v, s))`` with the rounding of ``fmt`` (the golden ``narrow``)."""
    return fit(shift_round(v, s, fmt.rounding, rand), fmt)




def shift_round_stages(lp, k: int, v, s, mode: str, rand=None) -> tuple[Value, int]:
    """:func:`shift_round` of operands valid in stage ``k`` of loop ``lp``, staged: 1 stage for a
    constant ``s`` (an add, a fixed shift); 2 for a run-time ``s`` (the add of the rounding
    term, then the barrel shift), which must hold still while the loop runs (the learning-rate
    shifts do). Returns the value and its stages."""
    if isinstance(s, int):
        return lp.delay(shift_round(v, s, mode, rand), 1, k), 1
    return lp.delay(lp.delay(_rounding_sum(Value.cast(v), s, mode, rand), 1, k) >> Value.cast(s), 1, k + 1), 2
