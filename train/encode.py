"""Input encodings of the float model: the golden model's three codes, in torch.

A dataset's raw pixels ``p in [0, max_value]`` are first quantized into the spec's encoding
format exactly as golden does it (:func:`localsnn.golden.encode.quantize_pixels`), so the float
model and golden see the same intensities ``I = x / 2**frac``. Then, for ``T`` steps
(``[T, B, *shape]`` float32, what :class:`localsnn.train.api.Learner` takes):

* ``direct``  ``I`` at every step (an input current).
* ``rate``    a spike when ``r < x`` with ``r`` uniform on ``0 .. 2**frac - 1``, one draw per
  input per step: ``P(spike) = x / 2**frac = I``, the probability golden's LFSR draws give.
  The draws come from a seeded :class:`torch.Generator`, not from golden's LFSR, so single
  spikes differ from golden's; their statistics do not.
* ``latency`` one spike at ``t_s = floor(T - T*I + 1/2)`` (Ma et al. eq. 17, ties rounded up,
  steps 0..T-1), computed in integers with golden's own :func:`latency_times`; ``t_s >= T``
  (only a black pixel) is no spike.
* ``events``  the samples are already the event values of every step (``[B, T, n]``, integers
  of the format, :func:`localsnn.data.load_inputs`): ``x_t / 2**frac`` with ``frac = 0``, the
  count itself (a spike for a 1-bit format), moved to ``[T, B, n]``: the values golden takes.
"""

from __future__ import annotations

import numpy as np
import torch
from localsnn.golden.encode import latency_times, quantize_pixels

from localsnn.errors import LocalsnnError
from localsnn.spec import ENCODINGS, EncodingSpec


def quantize(pixels: np.ndarray, max_value: int, spec: EncodingSpec) -> torch.Tensor:
    """Raw integer pixels ``(N, ...)`` to the encoding format's integers, as an int32 tensor."""
    return torch.from_numpy(quantize_pixels(pixels, max_value, spec.format).astype(np.int32))


class Encoder:
    """Turns quantized pixels ``[B, *shape]`` (integers of ``spec.format``), or event values
    ``[B, T, n]``, into the input of the first layer, ``[T, B, *shape]`` float32.

    ``generator`` drives the rate code (it must live on the device of the pixels).
    """

    def __init__(self, spec: EncodingSpec, timesteps: int) -> None:
        if spec.kind not in ENCODINGS:  # pragma: no cover - EncodingSpec validates it
            raise LocalsnnError(f"unknown encoding {spec.kind!r}; allowed: {', '.join(ENCODINGS)}")
        self.kind = spec.kind
        self.frac = spec.format.frac
        self.timesteps = timesteps

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        T = self.timesteps
        one = 1 << self.frac
        if self.kind == "events":
            if x.dim() != 3 or x.shape[1] != T:
                raise LocalsnnError(f"events: samples of shape [B, {T}, inputs] expected, got {list(x.shape)}")
            return (x.to(torch.float32) / one).transpose(0, 1).contiguous()
        if self.kind == "direct":
            return (x.to(torch.float32) / one).unsqueeze(0).expand(T, *x.shape).contiguous()
        if self.kind == "rate":
            r = torch.randint(0, one, (T, *x.shape), generator=generator, device=x.device, dtype=torch.int32)
            return (r < x.unsqueeze(0)).to(torch.float32)
        ts = latency_times_torch(x, T, self.frac)
        steps = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))
        return (ts.unsqueeze(0) == steps).to(torch.float32)


def latency_times_torch(x: torch.Tensor, timesteps: int, frac: int) -> torch.Tensor:
    """:func:`localsnn.golden.encode.latency_times` on a torch tensor (cast to int64 first)."""
    return latency_times(x.to(torch.int64), timesteps, frac)


__all__ = ["Encoder", "latency_times", "latency_times_torch", "quantize"]
