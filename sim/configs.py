"""The specs the co-simulation tests and benchmarks run: the digits net and a two-hidden-layer
net for every rule and encoding, and seeded random specs."""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from localsnn import rules as R
from localsnn import spec as S
from localsnn.errors import SpecError

F = S.FixedFormat
RULES = R.NAMES
#: the encodings the random specs draw from; the matrix of rules x encodings runs the digits
#: images, so it has those that encode pixels (events come from recordings, binned per step)
ENCODINGS = S.ENCODINGS
MATRIX_ENCODINGS = tuple(e for e in S.ENCODINGS if e != "events")


def matrix_spec(rule: str, encoding: str, net: str) -> S.NetworkSpec:
    """``net = "digits"``: the shipped 64-64-10 digits spec of the rule (its registry entry's
    ``digits_spec``); ``net = "two"``: the same neurons and formats as 64-24-16-10 with two
    hidden layers, T = 6, DECOLLE's with the authors' trace order (``trace_order =
    "decolle-public"``; the shipped spec has the paper's), so that the matrix runs both."""
    base = S.load(R.rule(rule).digits_spec)
    base = dataclasses.replace(base, encoding=dataclasses.replace(base.encoding, kind=encoding), learning=dataclasses.replace(base.learning, rule=rule))
    if net == "digits":
        return dataclasses.replace(base, name=f"digits-{rule}-{encoding}")
    layer = base.layers[0]
    if layer.neuron.model == "decolle":
        layer = dataclasses.replace(layer, neuron=dataclasses.replace(layer.neuron, trace_order="decolle-public"))
    acc = 40
    layers = (dataclasses.replace(layer, size=24, accumulator=acc), dataclasses.replace(layer, size=16, accumulator=acc))
    return dataclasses.replace(base, name=f"two-{rule}-{encoding}", layers=layers, timesteps=6)


class _Draw:
    """Seeded draws that favour the ends of every range (corners first): ``int(lo, hi)`` is
    ``lo`` or ``hi`` with probability ``edge`` each, else uniform."""

    def __init__(self, seed: int, edge: float = 0.2) -> None:
        self.rng = random.Random(seed)
        self.edge = edge

    def int(self, lo: int, hi: int) -> int:
        u = self.rng.random()
        if u < self.edge:
            return lo
        if u < 2 * self.edge:
            return hi
        return self.rng.randint(lo, hi)

    def choice(self, options):
        return self.rng.choice(tuple(options))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def fmt(self, lo: int, hi: int, *, signed: bool = True, frac=None, roundings=("floor", "nearest"), wrap: bool = False) -> S.FixedFormat:
        """A format of ``lo..hi`` bits; ``frac`` a (lo, hi) range (default 0..width)."""
        width = self.int(max(lo, 2 if signed else 1), hi)
        f_lo, f_hi = frac if frac is not None else (0, width)
        f = self.int(min(f_lo, width), min(f_hi, width))
        overflow = self.choice(("saturate", "saturate", "wrap")) if wrap else "saturate"
        return F(width, f, signed=signed, rounding=self.choice(roundings), overflow=overflow)


def random_spec(seed: int, *, chip: bool = True, size_max: int = 24) -> tuple[S.NetworkSpec, int]:
    """A valid random spec and a lane count, drawn deterministically from ``seed``, over every
    field's range with its ends drawn first (:class:`_Draw`). With ``chip``, only specs the
    RTL implements (``board.chip_problems`` empty: formats up to 32 bits, ``accumulate = 1``);
    without, formats up to 64 bits (as far as the golden model's 62-bit work widths allow; for golden-only tests).

    The draws reach on purpose the regions of the spec space where bugs were found:

    * direct input with integer pixels (``frac = 0``) and with integer bits (``frac < width``);
      pixels of 1 to 12 bits, rate and latency codes of 0 to 12 fractional bits; events as
      spikes (1 bit) and as counts of 2 to 8 bits, a new input list every step;
    * narrow classifier weights (down to 2 bits, no integer bits) with large surrogate values
      (surrogate formats with integer bits, boxcar and rect widths up to 64) and small update
      shifts;
    * FELL with large thresholds (up to the potential's largest value, so ``theta lut`` is far
      above 1) and decays above 1 (decay formats with integer bits);
    * ``lr_shift`` at both ends of its allowed range (and in between);
    * every LFSR width (8 to 32) with stochastic rounding and DECOLLE's random readouts;
    * many classes (up to 40) with few neurons (down to 1), one to three layers;
    * formats up to the largest width allowed (32 bits on the chip, 62 for golden), accumulators
      exactly as narrow as the worst-case sum allows, saturating and wrapping weights;
    * thresholds of one LSB, ``rho = 0``, negative DECOLLE thresholds, one time step.
    """
    from localsnn.chip import chip_problems

    d = _Draw(seed)
    wmax = 32 if chip else 64
    for _attempt in range(2000):
        rule = d.choice(RULES)
        model = R.rule(rule).neuron or d.choice(("lif", "lif", "decolle"))  # a rule's own model, or any
        enc = d.choice(ENCODINGS + ("direct",))
        n_layers = d.choice((1, 1, 2, 2, 3))
        inputs = d.int(1, 40)
        classes = d.int(2, 40) if d.chance(0.3) else d.int(2, 8)
        T = d.int(1, 8)
        if enc == "direct":
            pix = d.fmt(1, 12, signed=False)
        elif enc == "events":  # spikes (1 bit) or counts of up to MAX_EVENT_BITS, integers
            pix = d.fmt(1, S.MAX_EVENT_BITS, signed=False, frac=(0, 0))
        else:
            pix = d.fmt(1, 12, signed=False, frac=(0, 12))
            pix = F(pix.width, pix.width if d.chance(0.7) else pix.frac, signed=False, rounding=pix.rounding)
        pot = d.fmt(2, wmax, frac=(0, 12), wrap=False)
        if pot.max_int < 1:
            continue
        dec = d.fmt(1, 12, signed=False)
        tau = d.choice((1.0, 1.5, 2.0, 3.0, 5.0, 20.0, 1000.0))
        leak = d.choice(("multiply", "multiply", "shift"))
        lsb = 2.0**-pot.frac
        big = pot.to_real(pot.max_int)
        wfmt = d.fmt(2, wmax, roundings=("floor", "nearest", "stochastic"), wrap=True)
        try:
            if model == "lif":
                theta = d.choice((lsb, 0.5, 1.0, 2.0, big, min(32.0, big)))
                neuron = S.NeuronSpec(tau=tau, threshold=theta, leak=leak, potential=pot, decay=dec)
                cneuron = S.NeuronSpec(tau=d.choice((1.0, 2.0, 1000.0)), threshold=d.choice((lsb, 1.0, big)), leak=leak, potential=pot, decay=dec)
                cw = d.fmt(2, wmax, roundings=("floor", "nearest", "stochastic"), wrap=True)
                clf = S.ClassifierSpec(weight=cw, accumulator=63, neuron=cneuron, init=S.InitSpec(scale=d.choice((0.0, 0.25, cw.to_real(cw.max_int)))))
                sk = d.choice(("exp", "rect", "boxcar"))
            else:
                theta = d.choice((0.0, lsb, 0.25, -0.5, 1.0))
                tf = d.fmt(2, min(wmax, 20), signed=False, frac=(max(1, pix.frac if enc == "direct" else 0), 16))
                if tf.frac < 1 or tf.max_int < (1 << tf.frac):
                    continue
                neuron = S.NeuronSpec(model="decolle", tau=tau, tau_syn=d.choice((1.0, 2.0, 5.0)), tau_ref=d.choice((1.0, 2.0, 4.0)), rho=d.choice((0.0, lsb, 0.5, 1.0)), threshold=theta, leak=leak, potential=pot, decay=dec, trace=tf, trace_order=d.choice(S.TRACE_ORDERS))
                gfmt = d.fmt(2, min(wmax, 16))
                clf = S.ClassifierSpec(kind="random", weight=gfmt, accumulator=min(63, wmax) if chip else 63, init=S.InitSpec(scale=d.choice((0.0, 0.125, gfmt.to_real(gfmt.max_int)))), feedback=d.fmt(2, min(wmax, 16)))
                sk = d.choice(("boxcar", "exp", "rect"))
            surrogate = S.SurrogateSpec(kind=sk, width=d.choice((0.25, 1.0, 2.0, 16.0, 64.0)), format=d.fmt(1, 12, signed=False), step_frac=d.int(0, min(6, pot.frac)), size=d.choice((1, 16, 128, 256)))
            sizes = [d.int(1, size_max) for _ in range(n_layers)]
            layers = tuple(S.LayerSpec(size=n, neuron=neuron, weight=wfmt, accumulator=63, init=S.InitSpec(scale=d.choice((0.0, 0.3, wfmt.to_real(wfmt.max_int)))), classifier=clf, learn=not d.chance(0.15)) for n in sizes)
            # accumulators exactly as narrow as the worst case, or a few bits more
            encoding = S.EncodingSpec(kind=enc, format=pix, window_us=d.int(1, 10**6) if enc == "events" else 0)
            sized = []
            for i, ls in enumerate(layers):
                (need, _), (c_need, _) = S.accumulator_needs(inputs, encoding, layers, i)
                cacc = min(63, c_need + d.choice((0, 0, 3)))
                sized.append(dataclasses.replace(ls, accumulator=min(63, need + d.choice((0, 0, 3))), classifier=dataclasses.replace(ls.classifier, accumulator=cacc)))
            layers = tuple(sized)
            error = d.fmt(2, wmax)
            trace = d.fmt(2, wmax, frac=(pix.frac if enc == "direct" else 0, 16))
            lfsr = S.LFSRSpec(width=d.choice(S.LFSR_WIDTHS), seed=d.int(1, (1 << 16) - 1))
        except SpecError:
            continue
        # learning-rate shift at either end of its range, or between
        try:
            probe = S.NetworkSpec(name=f"random-{seed}", inputs=inputs, classes=classes, timesteps=T, encoding=encoding, layers=layers, lfsr=lfsr, learning=S.LearningSpec(rule=R.NONE, error=error, trace=trace, surrogate=surrogate))
        except SpecError:
            continue
        if R.rule(rule).learns:
            try:
                lo, hi = _range_of(probe, rule)
            except SpecError:
                continue
            if lo > hi:
                continue
            lr = d.int(lo, hi)
        else:
            lr = 8
        try:
            spec = dataclasses.replace(probe, learning=dataclasses.replace(probe.learning, rule=rule, lr_shift=lr))
        except SpecError:
            continue
        if chip and chip_problems(spec):
            continue
        return spec, d.choice((1, 1, 2, 4, 8, 16, 32))
    raise RuntimeError(f"no valid random spec from seed {seed}")


def _range_of(probe: S.NetworkSpec, rule: str) -> tuple[int, int]:
    """``lr_shift_range()`` of ``probe`` under ``rule`` whatever its own ``lr_shift``."""
    for lr in range(0, 63):
        try:
            return dataclasses.replace(probe, learning=dataclasses.replace(probe.learning, rule=rule, lr_shift=lr)).lr_shift_range()
        except SpecError as err:
            if err.field != "learning.lr_shift":
                raise
    return 1, 0  # no shift works


def random_pixels(spec: S.NetworkSpec, n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """``n`` samples of the spec's input integers (``spec.sample_shape``) and labels: quantized
    pixels, a third of them 0 as in real images; for ``events``, values of every step, most of
    them 0 as in binned recordings (and the largest count in some)."""
    rng = np.random.default_rng(seed)
    fmt = spec.encoding.format
    zero = 0.6 if spec.encoding.per_step else 0.35
    out = []
    for _ in range(n):
        x = rng.integers(0, fmt.max_int + 1, spec.sample_shape)
        x[rng.random(spec.sample_shape) < zero] = 0
        out.append((x, int(rng.integers(0, spec.classes))))
    return out


def corner_specs() -> dict[str, S.NetworkSpec]:
    """The smallest reproducers of the corner-case bugs found from outside the project (each
    accepted by the spec; the RTL or golden once got it wrong), kept as co-simulation cases:

    * ``int-pixels``, ``int-pixels-decolle``: direct input with integer pixels (``u2.0``),
      once taken for spikes of value 1 by the RTL (and golden's ELL update);
    * ``narrow-clf``: 6-bit classifier weights without integer bits, a boxcar surrogate of
      width 16 and update shift 0: the classifier change exceeds any weight (the RTL once
      stored it too narrow and wrapped);
    * ``fell-theta``: FELL with threshold 32 and ``exp`` surrogate steps of 1: the trace factor
      ``D(1 - theta lut)`` is far from 1 (golden once overflowed int32);
    * ``lfsr8-decolle``: DECOLLE's random readout from an 8-bit LFSR (once crashed golden);
    * ``decolle-pixel-bits``: DECOLLE fed pixels with integer bits (``u12.7``, up to 31.99)
      through a ``u8.7`` trace: the RTL once kept the raw pixel in the trace's 8 bits (found by
      the random specs, seed 37).
    """
    enc_int = S.EncodingSpec(kind="direct", format=F(2, 0, signed=False))
    decolle = S.NeuronSpec(model="decolle", threshold=0.0)
    return {
        "int-pixels": S.NetworkSpec(
            name="int-pixels", inputs=1, classes=2, timesteps=1, encoding=enc_int,
            layers=(S.LayerSpec(size=1, init=S.InitSpec(scale=1.0)),), learning=S.LearningSpec(rule="none"),
        ),
        "int-pixels-decolle": S.NetworkSpec(
            name="int-pixels-decolle", inputs=1, classes=2, timesteps=3, encoding=enc_int,
            layers=(S.LayerSpec(size=1, neuron=decolle, accumulator=40, init=S.InitSpec(scale=1.0), classifier=S.ClassifierSpec(kind="random", accumulator=40)),),
            learning=S.LearningSpec(rule="none"),
        ),
        "narrow-clf": S.NetworkSpec(
            name="narrow-clf", inputs=1, classes=2, timesteps=1,
            layers=(S.LayerSpec(size=1, neuron=S.NeuronSpec(threshold=2**-8), init=S.InitSpec(scale=0.5),
                                classifier=S.ClassifierSpec(weight=F(6, 6, rounding="nearest"), init=S.InitSpec(scale=0.25))),),
            learning=S.LearningSpec(rule="ell", lr_shift=0, surrogate=S.SurrogateSpec(kind="boxcar", width=16.0)),
        ),
        "fell-theta": S.NetworkSpec(
            name="fell-theta", inputs=1, classes=2, timesteps=3,
            layers=(S.LayerSpec(size=1, neuron=S.NeuronSpec(threshold=32.0, tau=1000.0, decay=F(9, 8, signed=False, rounding="nearest"))),),
            learning=S.LearningSpec(rule="fell", lr_shift=6, surrogate=S.SurrogateSpec(kind="exp", width=64.0, step_frac=0, size=128)),
        ),
        "lfsr8-decolle": S.NetworkSpec(
            name="lfsr8-decolle", inputs=4, classes=3, timesteps=3, lfsr=S.LFSRSpec(width=8),
            layers=(S.LayerSpec(size=3, neuron=decolle, weight=F(16, 12, rounding="nearest"), accumulator=40, classifier=S.ClassifierSpec(kind="random")),),
            learning=S.LearningSpec(rule="decolle", lr_shift=2, surrogate=S.SurrogateSpec(kind="boxcar")),
        ),
        "decolle-pixel-bits": S.NetworkSpec(
            name="decolle-pixel-bits", inputs=3, classes=2, timesteps=6,
            encoding=S.EncodingSpec(kind="direct", format=F(12, 7, signed=False)),
            layers=(S.LayerSpec(size=2, neuron=dataclasses.replace(decolle, tau=2.0, potential=F(20, 4), trace=F(8, 7, signed=False)), weight=F(16, 12, rounding="nearest"), accumulator=30, init=S.InitSpec(scale=0.5), classifier=S.ClassifierSpec(kind="random")),),
            learning=S.LearningSpec(rule="decolle", lr_shift=4, surrogate=S.SurrogateSpec(kind="boxcar", step_frac=4)),
        ),
    }


def corner_samples(spec: S.NetworkSpec) -> list[tuple[np.ndarray, int]]:
    """The reproducers' samples: every pixel at its largest value with label 1 (what the
    bugs were found with), then half of it with label 0."""
    top = np.full(spec.sample_shape, spec.encoding.format.max_int, dtype=np.int64)
    return [(top, 1), (top // 2, 0)]
