"""Fixed-point arithmetic of the golden model: shifts that round, and overflow that is counted.

Every function takes and returns numpy integer arrays (or Python ints); no float is involved.
The modes are the spec's (:class:`localsnn.spec.FixedFormat`):

* ``floor``      ``v >> s``                       (arithmetic shift)
* ``nearest``    ``(v + 2**(s-1)) >> s``          (round half up)
* ``stochastic`` ``(v + (r mod 2**s)) >> s``       (``r`` a random word from an LFSR)

A shift by ``s <= 0`` is an exact left shift by ``-s``. Overflow into a format either
saturates (clips to ``[min_int, max_int]``) or wraps (keeps the low ``width`` bits, two's
complement); both are counted so that no overflow goes unnoticed.
"""

from __future__ import annotations

import numpy as np

from localsnn.errors import BadValueError
from localsnn.spec import FixedFormat


def shift_round(v, s: int, mode: str, rand=None):
    """Divide ``v`` by ``2**s`` and round as ``mode`` says (see module docstring).

    ``rand`` (needed for ``stochastic``) broadcasts against ``v``; only its low ``s`` bits are
    used.
    """
    if s <= 0:
        return v << (-s) if s else v
    if mode == "floor":
        return v >> s
    if mode == "nearest":
        return (v + (1 << (s - 1))) >> s
    if mode == "stochastic":
        if rand is None:
            raise BadValueError("stochastic rounding needs random words")
        return (v + (rand & ((1 << s) - 1))) >> s
    raise BadValueError(f"unknown rounding mode {mode!r}")


def shift_round_inplace(v: np.ndarray, s: int, mode: str, rand=None) -> np.ndarray:
    """:func:`shift_round` computed in the array ``v`` itself (which it returns)."""
    if s <= 0:
        if s:
            v <<= -s
        return v
    if mode == "nearest":
        v += 1 << (s - 1)
    elif mode == "stochastic":
        if rand is None:
            raise BadValueError("stochastic rounding needs random words")
        v += rand & ((1 << s) - 1)
    elif mode != "floor":
        raise BadValueError(f"unknown rounding mode {mode!r}")
    v >>= s
    return v


def fit(v, fmt: FixedFormat):
    """Bring ``v`` into the range of ``fmt`` (saturate or wrap). Returns ``(value, overflows)``.

    ``overflows`` is the number of elements that were out of range.
    """
    lo, hi = fmt.min_int, fmt.max_int
    if np.isscalar(v) or isinstance(v, int):
        over = int(v < lo or v > hi)
        if not over:
            return v, 0
        if fmt.overflow == "saturate":
            return (lo if v < lo else hi), 1
        return _wrap_scalar(int(v), fmt), 1
    if v.size == 0:
        return v, 0
    vmin, vmax = v.min(), v.max()
    if vmin >= lo and vmax <= hi:
        return v, 0
    over = int(np.count_nonzero(v < lo) + np.count_nonzero(v > hi))
    if fmt.overflow == "saturate":
        return np.clip(v, lo, hi), over
    mask = (1 << fmt.width) - 1
    w = v & mask
    if fmt.signed:
        w = np.where(w > hi, w - (1 << fmt.width), w)
    return w.astype(v.dtype, copy=False), over


def _wrap_scalar(v: int, fmt: FixedFormat) -> int:
    w = v & ((1 << fmt.width) - 1)
    if fmt.signed and w > fmt.max_int:
        w -= 1 << fmt.width
    return w


def narrow(v, s: int, fmt: FixedFormat, rand=None):
    """Shift ``v`` right by ``s`` with ``fmt.rounding`` and fit it into ``fmt``.

    Returns ``(value, overflows)``.
    """
    return fit(shift_round(v, s, fmt.rounding, rand), fmt)


class IntTypes:
    """The integer types the golden model computes with.

    ``IntTypes()`` (the default, fast): every intermediate gets the narrowest numpy type that
    the spec's formats prove it fits, :func:`work_dtype` of its bit count (no assumed bounds:
    each bit count is derived from the formats where the value is formed).
    ``IntTypes(exact=True)``: every array holds Python integers (``dtype=object``), which never
    overflow; slow, and the reference the fast types are tested against.
    """

    def __init__(self, exact: bool = False) -> None:
        self.exact = exact
        #: the type of values bounded by the spec's 62-bit work-width check
        self.wide = object if exact else np.int64

    def of(self, bits: int):
        """The type of an intermediate whose magnitude needs ``bits`` bits (sign included)."""
        return object if self.exact else work_dtype(bits)

    def __repr__(self) -> str:
        return f"IntTypes(exact={self.exact})"


def work_dtype(bits: int):
    """The numpy dtype for intermediates whose magnitude needs ``bits`` bits (sign included)."""
    if bits <= 31:
        return np.int32
    if bits <= 63:
        return np.int64
    raise OverflowError(f"an intermediate of {bits} bits does not fit the golden model's 64-bit integers")


def storage_dtype(fmt: FixedFormat):
    """The smallest numpy integer dtype that holds every value of ``fmt``."""
    for dt in (np.int8, np.int16, np.int32, np.int64) if fmt.signed else (np.uint8, np.uint16, np.uint32, np.uint64):
        info = np.iinfo(dt)
        if info.min <= fmt.min_int and fmt.max_int <= info.max:
            return dt
    raise OverflowError(f"{fmt.describe()} is wider than 64 bits")


def bits_of(magnitude: int) -> int:
    """Signed width needed for values in ``[-magnitude, magnitude]``."""
    return int(magnitude).bit_length() + 1
