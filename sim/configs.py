"""The specs the co-simulation tests and benchmarks run: the digits net and a two-hidden-layer
net for every rule and encoding, and seeded random specs."""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from localsnn import spec as S
from localsnn.errors import SpecError

F = S.FixedFormat
RULES = ("none", "ell", "fell", "decolle")
ENCODINGS = ("direct", "rate", "latency")


def matrix_spec(rule: str, encoding: str, net: str) -> S.NetworkSpec:
    """``net = "digits"``: the shipped 64-64-10 digits spec of the rule (``digits`` for ELL and
    none, ``digits-fell``, ``digits-decolle``); ``net = "two"``: the same neurons and formats
    as 64-24-16-10 with two hidden layers, T = 6."""
    base = S.load({"ell": "digits", "none": "digits", "fell": "digits-fell", "decolle": "digits-decolle"}[rule])
    base = dataclasses.replace(base, encoding=dataclasses.replace(base.encoding, kind=encoding), learning=dataclasses.replace(base.learning, rule=rule))
    if net == "digits":
        return dataclasses.replace(base, name=f"digits-{rule}-{encoding}")
    layer = base.layers[0]
    acc = 40
    layers = (dataclasses.replace(layer, size=24, accumulator=acc), dataclasses.replace(layer, size=16, accumulator=acc))
    return dataclasses.replace(base, name=f"two-{rule}-{encoding}", layers=layers, timesteps=6)


def random_spec(seed: int) -> tuple[S.NetworkSpec, int]:
    """A valid random spec and a lane count, drawn deterministically from ``seed``: sizes,
    widths, lanes, thresholds, decays, learning-rate shifts, rounding modes, rule, encoding."""
    rng = random.Random(seed)
    for _attempt in range(1000):
        rule = rng.choice(RULES)
        model = "decolle" if rule == "decolle" else "lif"
        enc = rng.choice(ENCODINGS)
        n_layers = rng.choice((1, 1, 2))
        inputs = rng.randint(5, 40)
        classes = rng.randint(2, 6)
        T = rng.randint(2, 8)
        pix = F(rng.choice((4, 6, 8)), 0, signed=False, rounding=rng.choice(("floor", "nearest")))
        pix = F(pix.width, pix.width, signed=False, rounding=pix.rounding)
        f_u = rng.randint(4, 9)
        pot = F(f_u + rng.randint(6, 9), f_u, rounding=rng.choice(("floor", "nearest")))
        dec = F(rng.choice((4, 6, 8)), 0, signed=False, rounding=rng.choice(("floor", "nearest")))
        dec = F(dec.width, dec.width, signed=False, rounding=dec.rounding)
        w_round = rng.choice(("floor", "nearest", "stochastic"))
        f_w = rng.randint(6, 11)
        wfmt = F(f_w + rng.randint(3, 6), f_w, rounding=w_round, overflow=rng.choice(("saturate", "saturate", "wrap")))
        tau = rng.choice((1.0, 1.5, 2.0, 3.0, 5.0))
        leak = rng.choice(("multiply", "multiply", "shift"))
        if model == "lif":
            theta = rng.choice((0.5, 1.0, 1.5, 2.0))
            neuron = S.NeuronSpec(tau=tau, threshold=theta, leak=leak, potential=pot, decay=dec)
            clf = S.ClassifierSpec(weight=wfmt, accumulator=40, neuron=neuron, init=S.InitSpec(scale=rng.choice((0.3, 0.6, 1.0))))
            surrogate = S.SurrogateSpec(kind=rng.choice(("exp", "rect")), width=rng.choice((0.5, 1.0, 2.0)), step_frac=min(rng.randint(2, 5), f_u), size=rng.choice((16, 64)))
        else:
            theta = rng.choice((0.0, 0.25, 0.5))
            tf = rng.randint(8, 12)
            neuron = S.NeuronSpec(model="decolle", tau=tau, tau_syn=rng.choice((1.0, 2.0)), tau_ref=rng.choice((1.0, 2.0, 4.0)), rho=rng.choice((0.0, 0.5, 1.0)), threshold=theta, leak=leak, potential=pot, decay=dec, trace=F(tf + 1, tf, signed=False, rounding=rng.choice(("floor", "nearest"))))
            gfmt = F(8, 8, rounding="floor")
            clf = S.ClassifierSpec(kind="random", weight=gfmt, accumulator=24, init=S.InitSpec(scale=rng.choice((0.125, 0.25))), feedback=F(12, 10, rounding="nearest"))
            surrogate = S.SurrogateSpec(kind="boxcar", width=1.0, step_frac=min(4, f_u), size=16)
        sizes = [rng.randint(3, 40) for _ in range(n_layers)]
        layers = tuple(S.LayerSpec(size=n, neuron=neuron, weight=wfmt, accumulator=48, init=S.InitSpec(scale=rng.choice((0.3, 0.6, 1.0))), classifier=clf, learn=rng.random() > 0.1) for n in sizes)
        error = F(rng.randint(12, 16), rng.randint(8, 11), rounding=rng.choice(("floor", "nearest")))
        trace = F(rng.randint(12, 14), rng.randint(8, 10), rounding=rng.choice(("floor", "nearest")))
        lfsr = S.LFSRSpec(width=rng.choice((16, 24, 32)), seed=rng.randint(1, 1 << 15))
        bump = rng.randint(0, 3)
        shifts = [lr for lr in range(0, 40) for _ in (0,)]
        shifts = shifts[bump:] + shifts[:bump]  # near the fastest learning rate the formats allow
        for lr in shifts:
            try:
                spec = S.NetworkSpec(
                    name=f"random-{seed}", inputs=inputs, classes=classes, timesteps=T,
                    encoding=S.EncodingSpec(kind=enc, format=pix), layers=layers, lfsr=lfsr,
                    learning=S.LearningSpec(rule=rule, lr_shift=lr, error=error, trace=trace, surrogate=surrogate),
                )
            except SpecError:
                continue
            return spec, rng.choice((1, 2, 4, 8))
    raise RuntimeError(f"no valid random spec from seed {seed}")


def random_pixels(spec: S.NetworkSpec, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """``n`` samples of quantized pixels (a third of them 0, as in real images) and labels."""
    rng = np.random.default_rng(seed)
    fmt = spec.encoding.format
    out = []
    for _ in range(n):
        x = rng.integers(0, fmt.max_int + 1, spec.inputs)
        x[rng.random(spec.inputs) < 0.35] = 0
        out.append((x, int(rng.integers(0, spec.classes))))
    return out
