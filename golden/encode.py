"""Input encodings (spec ``encoding``): what the first layer receives at each time step.

Pixels arrive as raw integers ``p in [0, max_value]`` (8-bit for MNIST, 0..16 for the 8x8
digits) and are first quantized into the encoding format, ``x = p * 2**frac / max_value``
rounded as the format says and saturated (so ``x / 2**frac`` is the intensity ``I``).

* ``direct``  x at every step (multi-bit input current).
* ``rate``    spike when ``r < x`` with ``r`` the low ``frac`` bits of one ``encode`` LFSR draw
  per input per step (drawn for every input, in input order, step after step), so
  ``P(spike) = I``.
* ``latency`` one spike at ``t_s = round(T - T*I)`` (Ma et al. eq. 17), rounded half up, steps
  numbered 0..T-1; ``t_s >= T`` (only ``I = 0``) is no spike.
* ``events``  the sample holds every step already, ``(T, n)`` event counts of its bins
  (:func:`localsnn.events.bin_events`) saturated at ``format.max_int`` (:func:`event_values`):
  passed through as they are, spikes with a 1-bit format, multi-bit currents with a wider one.
"""

from __future__ import annotations

import numpy as np

from localsnn.errors import LocalsnnError
from localsnn.spec import EncodingSpec, FixedFormat


def quantize_pixels(pixels, max_value: int, fmt: FixedFormat) -> np.ndarray:
    """Raw pixels (any integer array) to encoding-format integers, ``p * 2**frac / max_value``."""
    p = np.asarray(pixels)
    if p.dtype.kind not in "iu":
        raise LocalsnnError(f"pixels must be integers 0..{max_value}, got an array of {p.dtype}")
    p = p.astype(np.int64)
    if p.size and (p.min() < 0 or p.max() > max_value):
        raise LocalsnnError(f"pixels must be integers 0..{max_value}; got values from {p.min()} to {p.max()}")
    num = p << fmt.frac
    if fmt.rounding == "nearest":
        x = (2 * num + max_value) // (2 * max_value)
    else:
        x = num // max_value
    return np.minimum(x, fmt.max_int)


def event_values(counts, fmt: FixedFormat) -> np.ndarray:
    """Event counts per bin (``(..., T, n)`` non-negative integers) to the encoding format's
    integers, ``min(count, format.max_int)`` (a 1-bit format: whether the bin has an event),
    as uint8 (``MAX_EVENT_BITS``)."""
    c = np.asarray(counts)
    if c.dtype.kind not in "iu":
        raise LocalsnnError(f"event counts must be integers, got an array of {c.dtype}")
    if c.size and c.min() < 0:
        raise LocalsnnError(f"event counts must be >= 0; got {c.min()}")
    return np.minimum(c, fmt.max_int).astype(np.uint8)


def rate_spikes(x: np.ndarray, draws: np.ndarray, frac: int) -> np.ndarray:
    """Bernoulli spikes ``(draw mod 2**frac) < x`` (shapes of ``x`` and ``draws`` equal)."""
    r = (draws & np.uint64((1 << frac) - 1)).astype(np.int64)
    return r < x


def latency_times(x, timesteps: int, frac: int):
    """Spike step ``t_s = floor(T - T*x/2**frac + 1/2) = (2T(2**frac - x) + 2**frac) >> (frac + 1)``
    per input (``>= T`` means none). Only ``+ - * >>``: the same expression for numpy and torch
    integer arrays (signed, 64-bit: the caller casts) and for the chip's Amaranth values
    (``rtl/top.py``), so golden, the float model and the RTL compute it once."""
    one = 1 << frac
    return (2 * timesteps * (one - x) + one) >> (frac + 1)


class Encoder:
    """Turns quantized pixels into the per-step input of layer 0, drawing from ``lfsr``.

    ``step_input(x, t)`` returns the integer input vector for step ``t``: the pixels
    themselves (direct) or 0/1 spikes (rate, latency).
    """

    def __init__(self, spec: EncodingSpec, timesteps: int, lfsr) -> None:
        self.spec = spec
        self.timesteps = timesteps
        self.lfsr = lfsr

    def sample_inputs(self, x: np.ndarray) -> np.ndarray:
        """All steps of one sample (or a batch, leading axes kept): shape ``(..., T, n)``;
        ``x`` is ``(..., n)`` quantized pixels, or ``(..., T, n)`` event values (``events``).

        Rate draws are taken in sample order, then step order, then input order.
        """
        T = self.timesteps
        kind = self.spec.kind
        if kind == "events":
            return x
        if kind == "direct":
            return np.broadcast_to(x[..., None, :], x.shape[:-1] + (T, x.shape[-1]))
        if kind == "latency":
            ts = latency_times(np.asarray(x, dtype=np.int64), T, self.spec.format.frac)
            return (ts[..., None, :] == np.arange(T)[:, None]).astype(np.int64)
        lead = x.shape[:-1]
        n = x.shape[-1]
        count = int(np.prod(lead, dtype=np.int64)) * T * n
        draws = self.lfsr.draws(count).reshape(lead + (T, n))
        return rate_spikes(x[..., None, :], draws, self.spec.format.frac).astype(np.int64)
