"""The one interface between the float learners and the code that drives them.

The learners (``train/lif.py``: BPTT, ELL, BELL, FELL, FELL-KP; ``train/decolle.py``: DECOLLE;
``train/tlbptt.py``: truncated local BPTT) each build a :class:`Learner` from a
:class:`~localsnn.spec.NetworkSpec` (or, for convolutional nets, an architecture string) and a
:class:`RuleOptions`. The training loop (``train/loop.py``), the export to golden
(``train/export.py``) and the benchmark (``train/bench.py``) only use what is declared here.

Tensors: ``x`` is the encoded input, ``[T, B, *input_shape]`` float32 (input currents for the
direct code, 0/1 spikes for rate and latency codes), ``y`` the labels ``[B]`` int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

#: how often the optimizer applies a rule's updates: after every time step (the papers'
#: algorithms, and what the chip does) or once per sample window (accumulated)
UPDATES = ("step", "sample")


@dataclass(frozen=True)
class RuleOptions:
    """Knobs of the learning rules; each rule reads the ones it uses and ignores the rest.

    ``update``: ``step`` or ``sample`` (see :data:`UPDATES`). ``surrogate``/``surrogate_width``:
    ``exp`` (Ma eq. 7), ``rect`` (Guo, height 1/a on |u - theta| < a/2) or ``boxcar`` (DECOLLE);
    ``None`` takes the spec's. ``kp_decay``: weight decay lambda of FELL-KP's feedback matrix B
    (Ma eq. 16). ``k``/``n``: truncation length and block size of truncated local BPTT (Guo).
    ``random_classifiers``: fixed random local classifiers instead of trainable ones (Guo).
    ``decolle_reg``: the two regulariser weights of DECOLLE section 2.3.4 (upper, lower).
    ``seed``: initial weights and random matrices.
    """

    update: str = "step"
    surrogate: str | None = None
    surrogate_width: float | None = None
    kp_decay: float = 1e-4
    k: int = 5
    n: int = 1
    random_classifiers: bool = False
    decolle_reg: tuple[float, float] = (1e-2, 1e-3)
    seed: int = 0


@runtime_checkable
class Learner(Protocol):
    """A network plus its learning rule (a ``torch.nn.Module``)."""

    #: the rule's name as the CLI spells it (``bptt``, ``ell``, ``bell``, ``fell``, ``fell-kp``,
    #: ``decolle``, ``tlbptt``)
    rule: str

    def train_step(self, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """Run one window of ``T`` steps on the batch, learning as the rule says.

        The rule writes its updates into the ``.grad`` of its parameters (as gradients of a
        loss to minimise, so that any torch optimizer applies them) and calls
        ``optimizer.step()`` then ``optimizer.zero_grad()`` after every time step when
        ``update == "step"``, once at the end of the window when ``"sample"`` (truncated
        local BPTT: every ``k`` steps). Returns ``{"loss": total, "loss/<layer>": ...}``
        averaged over the window.
        """
        ...

    def evaluate(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Without learning: each layer's local classifier scores ``[B, classes]`` (summed
        over the window; the decision is their argmax), first layer first."""
        ...

    def layer_names(self) -> list[str]:
        """One name per layer that has a classifier (``layer0``, ...), in evaluate()'s order."""
        ...


def load_float_weights(layers, weights, names: tuple[str, ...]) -> None:
    """Copy ``weights`` (per layer ``{name: array}``, golden's layout, as a learner's
    ``float_weights()`` gives them) into the tensors ``layers[i].<name>``: every name, every
    shape as the layer has it, or ValueError naming what differs."""
    if len(weights) != len(layers):
        raise ValueError(f"weights for {len(weights)} layers; the network has {len(layers)}")
    for i, (lay, d) in enumerate(zip(layers, weights)):
        if set(d) != set(names):
            raise ValueError(f"layer {i}: arrays {sorted(d)}; needed: {sorted(names)}")
        for name in names:
            dst = getattr(lay, name)
            src = torch.as_tensor(d[name])
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(f"layer {i} {name}: shape {tuple(src.shape)}; needed {tuple(dst.shape)}")
            with torch.no_grad():
                dst.copy_(src.to(dtype=dst.dtype, device=dst.device))
