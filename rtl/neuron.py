"""Per-lane neuron arithmetic, as Amaranth expressions, for the golden ``NeuronConstants`` constants.

Every function mirrors one golden function line for line (golden/model.py): ``leak``,
``leak_complement``, ``surrogate``, ``integrate``; the constants come from golden's derived
objects, so no number is typed twice.
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
    u = Value.cast(u)
    diff = u - theta
    mag = Mux(diff < 0, -diff, diff).as_unsigned()
    idx = mag >> index_shift
    width = max(int(max(table)).bit_length(), 1)
    rom = Array(Const(int(v), unsigned(width)) for v in table)
    n = len(table)
    return Mux(idx < n, rom[idx[: max((n - 1).bit_length(), 1)]], 0)


def integrate(neurons, u, o, current) -> tuple[Value, Value, Value]:
    """Eq. 2-3: ``u' = fit_U(D(u - theta o) + I)``, ``o' = [u' >= theta]``; returns (u', o', overflow)."""
    v = leak(Value.cast(u) - neurons.theta * Value.cast(o), neurons.decay, neurons.potential.rounding) + current
    u_new, over = fit(v, neurons.potential)
    return u_new, u_new >= neurons.theta, over
