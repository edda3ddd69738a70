"""Galois LFSRs: the one source of every random number the chip uses.

A ``width``-bit Galois LFSR steps as ``s <- (s >> 1) ^ (taps if s & 1 else 0)``. One *draw*
advances the register ``width`` steps, so that every bit of the returned word is new, and
returns the state. In hardware a draw is one clock: the ``width``-step transition is a fixed
XOR network (the matrix ``A**width`` over GF(2)), and ``k`` draws per clock are ``k`` such
networks.

Named streams (``encode``, ``init``, ``readout:0``, ``round:0``, ``round:0.clf``, ...) are
separate registers whose seeds :func:`stream_seed` derives from the spec's master seed.

The block form :meth:`LFSR.draws` computes ``n`` consecutive draws with numpy: the draws are a
linear function of the starting state, ``d_k = B**k s`` (``B = A**width``), so a table of
``B**k e_b`` for every basis vector ``e_b`` turns them into one XOR-reduction.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

from localsnn.errors import BadValueError

#: Galois (right-shift) tap masks of maximal-length LFSRs, one per supported width. They are
#: the Xilinx XAPP052 tap sets (bit ``t-1`` for tap ``t``); ``is_maximal`` proves each one.
TAPS: dict[int, int] = {
    8: (1 << 7) | (1 << 5) | (1 << 4) | (1 << 3),  # 8,6,5,4
    12: (1 << 11) | (1 << 5) | (1 << 3) | (1 << 0),  # 12,6,4,1
    16: (1 << 15) | (1 << 14) | (1 << 12) | (1 << 3),  # 16,15,13,4
    20: (1 << 19) | (1 << 16),  # 20,17
    24: (1 << 23) | (1 << 22) | (1 << 21) | (1 << 16),  # 24,23,22,17
    31: (1 << 30) | (1 << 27),  # 31,28
    32: (1 << 31) | (1 << 21) | (1 << 1) | (1 << 0),  # 32,22,2,1
}


def step(state: int, width: int) -> int:
    """One shift of the Galois LFSR (the bit-level definition)."""
    lsb = state & 1
    state >>= 1
    if lsb:
        state ^= TAPS[width]
    return state


def stream_seed(master: int, name: str, width: int) -> int:
    """The seed of the named stream: ``(master ^ crc32(name) * 0x9E3779B97F4A7C15) mod 2**width``,
    with 0 (the one state an LFSR cannot leave) replaced by 1."""
    mask = (1 << width) - 1
    seed = (master ^ (zlib.crc32(name.encode()) * 0x9E3779B97F4A7C15)) & mask
    return seed or 1


def stream_names(layers: int) -> list[str]:
    """The named streams of a network of ``layers`` layers, in the order the chip's LFSR
    registers hold them: the encoder's, then per layer its rounding stream and its
    classifier's."""
    names = ["encode"]
    for i in range(layers):
        names += [f"round:{i}", f"round:{i}.clf"]
    return names


# -- GF(2) matrices as tuples of column words ---------------------------------------------------


def _apply(cols, state: int, zero=0):
    """``M @ state`` over GF(2): the XOR of the columns ``cols[b]`` for every set bit ``b`` of
    ``state``. The columns may be ints or arrays (one value per draw); ``zero`` is the empty XOR."""
    out = zero
    b = 0
    while state:
        if state & 1:
            out ^= cols[b]
        state >>= 1
        b += 1
    return out


def _compose(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Columns of ``a @ b`` (apply ``b`` first)."""
    return tuple(_apply(a, col) for col in b)


@lru_cache(maxsize=None)
def _one_step(width: int) -> tuple[int, ...]:
    return tuple(step(1 << b, width) for b in range(width))


@lru_cache(maxsize=None)
def power(width: int, k: int) -> tuple[int, ...]:
    """Columns of ``A**k``, by repeated squaring."""
    result = tuple(1 << b for b in range(width))
    base = _one_step(width)
    while k:
        if k & 1:
            result = _compose(base, result)
        base = _compose(base, base)
        k >>= 1
    return result


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        if n % p == 0:
            out.append(p)
            while n % p == 0:
                n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def is_maximal(width: int) -> bool:
    """True when the LFSR of ``width`` visits all ``2**width - 1`` nonzero states.

    The period is the order of ``A``; it is maximal iff ``A**(2**w-1) = I`` and ``A**((2**w-1)/p)
    != I`` for every prime ``p`` dividing ``2**w - 1``.
    """
    identity = tuple(1 << b for b in range(width))
    n = (1 << width) - 1
    if power(width, n) != identity:
        return False
    return all(power(width, n // p) != identity for p in _prime_factors(n))


@lru_cache(maxsize=64)
def _draw_table(width: int, n: int) -> np.ndarray:
    """``table[b, k] = B**(k+1) e_b`` with ``B = A**width``: the k-th draw from state ``e_b``."""
    out = np.zeros((width, n), dtype=np.uint64)
    # doubling: knowing draws 1..m from each basis state, draws m+1..2m are B**m of them
    first = np.array(power(width, width), dtype=np.uint64)
    out[:, 0] = first
    filled = 1
    while filled < n:
        m = min(filled, n - filled)
        jump = power(width, width * filled)
        block = out[:, :m]
        new = np.zeros_like(block)
        for b in range(width):
            sel = ((block >> np.uint64(b)) & np.uint64(1)).astype(bool)
            new[sel] ^= np.uint64(jump[b])
        out[:, filled : filled + m] = new
        filled += m
    out.setflags(write=False)
    return out


_CHUNK = 4096


class LFSR:
    """A ``width``-bit Galois LFSR with a mutable state (see the module docstring).

    Small requests are served from a block of precomputed draws; ``state`` is always the last
    draw handed out (setting it discards the block).
    """

    def __init__(self, width: int, seed: int) -> None:
        if width not in TAPS:
            raise BadValueError(f"no tap table for width {width}; allowed: {sorted(TAPS)}")
        mask = (1 << width) - 1
        if not 0 < seed <= mask:
            raise BadValueError(f"seed must be from 1 to {mask} for a {width}-bit LFSR, not {seed}")
        self.width = width
        self.state = seed

    @property
    def state(self) -> int:
        return self._state

    @state.setter
    def state(self, value: int) -> None:
        self._state = int(value)
        self._buf = None
        self._pos = 0

    @classmethod
    def stream(cls, width: int, master: int, name: str) -> "LFSR":
        return cls(width, stream_seed(master, name, width))

    def draw(self) -> int:
        """Advance ``width`` steps and return the new state."""
        s = self._state
        for _ in range(self.width):
            s = step(s, self.width)
        self.state = s
        return s

    def draws(self, n: int) -> np.ndarray:
        """The next ``n`` draws as a uint64 array (same values as ``n`` calls of :meth:`draw`)."""
        if n <= 0:
            return np.zeros(0, dtype=np.uint64)
        if n <= _CHUNK // 4:
            if self._buf is None or self._pos + n > len(self._buf):
                buf = self._fresh(_CHUNK)  # continues from the last draw handed out
                self._buf, self._pos = buf, 0
            out = self._buf[self._pos : self._pos + n].copy()
            self._pos += n
            self._state = int(out[-1])
            return out
        parts = []
        for k in range(0, n, _CHUNK):
            parts.append(self._fresh(min(_CHUNK, n - k)))
            self._state = int(parts[-1][-1])
        self.state = self._state  # discards the block
        return np.concatenate(parts)

    def _fresh(self, n: int) -> np.ndarray:
        """``n`` draws following ``self._state``, without changing anything."""
        return _apply(_draw_table(self.width, n), self._state, np.zeros(n, dtype=np.uint64))

    def copy(self) -> "LFSR":
        return LFSR(self.width, self.state)
