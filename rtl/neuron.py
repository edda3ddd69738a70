"""Per-lane neuron arithmetic, as Amaranth expressions, for the golden ``NeuronConstants`` constants.

Every function mirrors one golden function line for line (golden/model.py): ``leak``,
``leak_complement``, ``surrogate``, and, cut into pipeline stages, ``integrate``
(``integrate_stages``); the constants come from golden's derived objects, so no number is
typed twice.
"""

from __future__ import annotations

from amaranth import Array, Const, Mux, Value, unsigned

from localsnn.rtl.fixed import fit, shift_round
from localsnn.spec import Decay


def leak(v, decay: Decay, rounding: str) -> Value:
    """``d * v``: ``R(v * d, f_d)`` or, in shift form, ``v - R(v, k)``."""
    v = Value.cast(v)
    if decay.mode == "shift":
        return v - shift_round(v, decay.shift, rounding)
    return shift_round(v * decay.multiplier, decay.frac, rounding)


def leak_complement(v, decay: Decay, rounding: str) -> Value:
    """``(1 - d) * v``: ``R(v * (2**f_d - d), f_d)`` or, in shift form, ``R(v, k)``."""
    v = Value.cast(v)
    if decay.mode == "shift":
        return shift_round(v, decay.shift, rounding)
    return shift_round(v * ((1 << decay.frac) - decay.multiplier), decay.frac, rounding)


def surrogate(u, theta: int, table, index_shift: int) -> Value:
    """``lut[|u - theta| >> index_shift]``, 0 beyond the table (golden ``surrogate``)."""
    return _lookup(_distance(u, theta), table, index_shift)


def _distance(u, theta: int) -> Value:
    """``|u - theta|``, unsigned."""
    diff = Value.cast(u) - theta
    return Mux(diff < 0, -diff, diff).as_unsigned()


def _lookup(mag, table, index_shift: int) -> Value:
    """``lut[mag >> index_shift]``, 0 beyond the table."""
    idx = Value.cast(mag) >> index_shift
    width = max(int(max(table)).bit_length(), 1)
    rom = Array(Const(int(v), unsigned(width)) for v in table)
    n = len(table)
    return Mux(idx < n, rom[idx[: max((n - 1).bit_length(), 1)]], 0)


# -- the same arithmetic cut into pipeline stages -------------------------------------------------
#
# Each function below takes operands valid (combinationally) in stage ``k`` of loop ``lp`` and
# returns its result ``n`` stages later, with ``n``. Between two stages there is one multiplier,
# or one add / compare / saturate chain, and the values are those of the functions above,
# integer for integer (a compact pipeline, ``Loop(pipeline="compact")``, merges the stages).

def surrogate_stages(lp, k: int, u, theta: int, table, index_shift: int) -> tuple[Value, int]:
    """:func:`surrogate` in 2 stages: the distance ``|u - theta|`` (an add and a negation), then
    the table lookup."""
    mag = lp.delay(_distance(u, theta), 1, k)
    return lp.delay(_lookup(mag, table, index_shift), 1, k + 1), 2


def leak_stages(lp, k: int, v, decay: Decay, rounding: str) -> tuple[Value, int]:
    """:func:`leak` in 2 stages: the product ``v * d`` (a multiplier, registered in and out), then
    its rounding ``R(., f_d)``; in shift form ``R(v, k)``, then ``v - R(v, k)``."""
    v = Value.cast(v)
    if decay.mode == "shift":
        r1 = lp.delay(shift_round(v, decay.shift, rounding), 1, k)
        return lp.delay(lp.delay(v, 1, k) - r1, 1, k + 1), 2
    p1 = lp.delay(v * decay.multiplier, 1, k)
    return lp.delay(shift_round(p1, decay.frac, rounding), 1, k + 1), 2


def integrate_stages(lp, k: int, neurons, u, o, total, cur_shift: int) -> tuple[Value, Value, int]:
    """Eq. 2-3 (:func:`integrate`) from the summed input ``total`` (``I = R_U(total, cur_shift)``)
    in 5 stages: ``I`` and ``u - theta o``; the leak (2); ``+ I``; ``fit_U``. Returns ``u'``,
    ``o' = [u' >= theta]`` (one compare after the last stage) and 5."""
    rnd = neurons.potential.rounding
    cur1 = lp.delay(shift_round(total, cur_shift, rnd), 1, k)
    a1 = lp.delay(Value.cast(u) - neurons.theta * Value.cast(o), 1, k)
    lk3, n = leak_stages(lp, k + 1, a1, neurons.decay, rnd)
    v4 = lp.delay(lk3 + lp.delay(cur1, n, k + 1), 1, k + 1 + n)
    u5 = lp.delay(fit(v4, neurons.potential)[0], 1, k + 2 + n)
    return u5, u5 >= neurons.theta, 3 + n


def leak_complement_stages(lp, k: int, v, decay: Decay, rounding: str) -> tuple[Value, int]:
    """:func:`leak_complement` in 2 stages: the product ``v (2**f_d - d)`` and its rounding; in
    shift form ``R(v, k)`` and one register more (both forms take the same stages)."""
    v = Value.cast(v)
    if decay.mode == "shift":
        return lp.delay(lp.delay(shift_round(v, decay.shift, rounding), 1, k), 1, k + 1), 2
    p1 = lp.delay(v * ((1 << decay.frac) - decay.multiplier), 1, k)
    return lp.delay(shift_round(p1, decay.frac, rounding), 1, k + 1), 2


def approach_stages(lp, k: int, old, target, decay: Decay, fmt) -> tuple[Value, int]:
    """``fit(old + (1 - d)(target - old))`` (a trace moving towards ``target``: DECOLLE's P, Q
    and R) in 5 stages: the difference; ``leak_complement_stages`` (2); the sum; ``fit``."""
    diff1 = lp.delay(Value.cast(target) - Value.cast(old), 1, k)
    lc3, n = leak_complement_stages(lp, k + 1, diff1, decay, fmt.rounding)
    total = lp.delay(lp.delay(old, 1 + n, k) + lc3, 1, k + 1 + n)
    return lp.delay(fit(total, fmt)[0], 1, k + 2 + n), 3 + n
