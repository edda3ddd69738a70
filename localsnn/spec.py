"""The network spec: one frozen description from which golden, float model and RTL are built.

Everything numeric that the hardware does is decided here, once: widths and fractional bits of
every stored quantity (:class:`FixedFormat`), rounding and overflow behaviour, the integer decay
constants, the surrogate-derivative lookup table, the learning-rate shifts. Downstream code
imports these values and never types them again (DESIGN.md, "The numeric contract").

Every constructor validates its arguments and raises :class:`~localsnn.errors.SpecError` naming
the field, the value and what is allowed. :func:`load` / :func:`save` read and write TOML and
round-trip exactly: ``load(save(spec)) == spec``.

The float arithmetic in this module (``exp`` for decays and surrogates) only *computes the
integer constants* of the spec; the golden model receives integers.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import tomli_w

from localsnn import rules as _rules
from localsnn.errors import SpecError

ROUNDINGS = ("floor", "nearest", "stochastic")
OVERFLOWS = ("saturate", "wrap")
NEURON_MODELS = ("lif", "decolle")
LEAKS = ("multiply", "shift")
#: DECOLLE's trace order (``NeuronSpec.trace_order``): eq. 4 as printed, or the authors' code
TRACE_ORDERS = ("paper", "decolle-public")
ENCODINGS = ("direct", "rate", "latency", "events")
#: how the events of two polarities enter (``EncodingSpec.polarity``, :mod:`localsnn.events`)
EVENT_POLARITIES = ("both", "merge", "on", "off")
#: the widest value of an event bin (a count saturates there): one byte per value in memory
MAX_EVENT_BITS = 8
CLASSIFIERS = ("spiking", "random")
#: the on-chip learning rules (:mod:`localsnn.rules`, one entry each)
RULES = _rules.NAMES
SURROGATES = ("exp", "rect", "boxcar")
INIT_KINDS = ("uniform",)
#: widths of the LFSRs whose maximal-length taps :mod:`localsnn.golden.lfsr` knows
LFSR_WIDTHS = (8, 12, 16, 20, 24, 31, 32)
#: what a spec's name may be (it names folders and files)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: largest magnitude (in bits) of any intermediate the golden model computes in int64
MAX_WORK_BITS = 62


def _fail(field_: str, detail: str) -> typing.NoReturn:
    raise SpecError(field_, detail)


def _check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"expected an integer, got {value!r} ({type(value).__name__})")
    if lo is not None and value < lo:
        allowed = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
        _fail(name, f"{value} is out of range; allowed: {allowed}")
    if hi is not None and value > hi:
        allowed = f"an integer <= {hi}" if lo is None else f"an integer from {lo} to {hi}"
        _fail(name, f"{value} is out of range; allowed: {allowed}")


def _check_float(name: str, value: Any, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(name, f"expected a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        _fail(name, f"{value!r} is not a finite number")
    if positive and value <= 0:
        _fail(name, f"{value!r} must be a positive number")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        _fail(name, f"unknown value {value!r}; allowed: {allowed}")


def _bits_signed(magnitude: int) -> int:
    """Width of the smallest two's-complement integer that holds every value in [-m, m]."""
    return max(magnitude.bit_length() + 1, 1)


def round_half_up(x: float) -> int:
    """Round to the nearest integer, ties toward +infinity (the spec's rounding of constants)."""
    return math.floor(x + 0.5)


# --------------------------------------------------------------------------------------------
# Fixed-point formats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedFormat:
    """A two's-complement (or unsigned) fixed-point number: ``value = integer * 2**-frac``.

    ``overflow`` says what happens when a result leaves the range (``saturate`` clips to the
    nearest end, ``wrap`` keeps the low ``width`` bits); ``rounding`` says how a right shift
    into this format rounds: ``floor`` (arithmetic shift), ``nearest`` (round half up:
    ``(v + 2**(s-1)) >> s``) or ``stochastic`` (``(v + r) >> s`` with ``r`` uniform in
    ``[0, 2**s)`` from an LFSR).
    """

    width: int
    frac: int
    signed: bool = True
    overflow: str = "saturate"
    rounding: str = "floor"

    def __post_init__(self) -> None:
        _check_int("width", self.width, 1, 64)
        _check_int("frac", self.frac)
        if self.frac < 0:
            _fail("frac", f"{self.frac} is negative; fractional bits must be from 0 to width ({self.width})")
        if self.frac > self.width:
            _fail(
                "frac",
                f"{self.frac} fractional bits is more than width = {self.width}; "
                f"fractional bits must be from 0 to {self.width}",
            )
        if not isinstance(self.signed, bool):
            _fail("signed", f"expected true or false, got {self.signed!r}")
        if self.signed and self.width < 2:
            _fail("width", "a signed format needs at least 2 bits (sign and one more)")
        _check_choice("overflow", self.overflow, OVERFLOWS)
        _check_choice("rounding", self.rounding, ROUNDINGS)

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def max_abs(self) -> int:
        """Largest magnitude an integer of this format can have."""
        return max(-self.min_int, self.max_int)

    def to_real(self, integer: int) -> float:
        return integer / (1 << self.frac)

    def represent(self, value: float, name: str) -> int:
        """The integer that represents ``value`` exactly, or a SpecError saying why none does."""
        scaled = value * (1 << self.frac)
        integer = round_half_up(scaled)
        if integer != scaled:
            nearest = self.to_real(integer)
            _fail(
                name,
                f"{value!r} is not representable in {self.describe()}: it is not a multiple of "
                f"2**-{self.frac}; nearest representable value: {nearest!r}",
            )
        if not self.min_int <= integer <= self.max_int:
            _fail(
                name,
                f"{value!r} is outside the range of {self.describe()}: "
                f"[{self.to_real(self.min_int)!r}, {self.to_real(self.max_int)!r}]",
            )
        return integer

    def describe(self) -> str:
        """Short name: ``s16.8`` is 16-bit signed with 8 fractional bits, ``u8.8`` unsigned."""
        return f"{'s' if self.signed else 'u'}{self.width}.{self.frac}"


def _fmt(width: int, frac: int, signed: bool = True, rounding: str = "floor") -> FixedFormat:
    return FixedFormat(width=width, frac=frac, signed=signed, rounding=rounding)


# --------------------------------------------------------------------------------------------
# Decays
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decay:
    """An integer decay constant ``d = exp(-1/tau)`` as the hardware applies it.

    ``mode == "multiply"``: ``d*v = (v * multiplier) >> frac`` and ``(1-d)*v = (v * (2**frac -
    multiplier)) >> frac``. ``mode == "shift"``: ``d = 1 - 2**-shift``, so ``d*v = v - (v >>
    shift)`` and ``(1-d)*v = v >> shift``. Each shift rounds as the format of the decayed
    quantity says.
    """

    mode: str
    multiplier: int
    frac: int
    shift: int

    @property
    def value(self) -> float:
        """The effective decay factor, as a real number (for reports)."""
        if self.mode == "shift":
            return 1.0 - 2.0**-self.shift
        return self.multiplier / (1 << self.frac)


def make_decay(name: str, tau: float, leak: str, fmt: FixedFormat) -> Decay:
    """Quantize ``exp(-1/tau)`` for ``leak`` mode ``"multiply"`` (into ``fmt``) or ``"shift"``."""
    exact = math.exp(-1.0 / tau)
    if leak == "shift":
        shift = round_half_up(-math.log2(1.0 - exact))
        if shift < 1:
            _fail(name, f"tau = {tau!r} gives exp(-1/tau) = {exact:.4f}, which no shift form 1 - 2**-k (k >= 1) approximates")
        if shift > 62:
            _fail(name, f"tau = {tau!r} needs a shift of {shift} bits; at most 62 is allowed")
        return Decay("shift", 0, 0, shift)
    scaled = exact * (1 << fmt.frac)
    multiplier = math.floor(scaled) if fmt.rounding == "floor" else round_half_up(scaled)
    if multiplier == 0:
        _fail(
            name,
            f"tau = {tau!r} gives exp(-1/tau) = {exact:.3g}, which rounds to 0 in {fmt.describe()}; "
            "not representable: use more fractional bits or a larger tau",
        )
    if multiplier > fmt.max_int:
        _fail(
            name,
            f"tau = {tau!r} gives exp(-1/tau) = {exact:.6f}, which rounds to {multiplier}/2**{fmt.frac} and "
            f"does not fit {fmt.describe()} (max {fmt.max_int}); not representable: use a format with an "
            "integer bit or a smaller tau",
        )
    return Decay("multiply", multiplier, fmt.frac, 0)


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


def _nested(name: str, build: typing.Callable[[], Any]) -> Any:
    try:
        return build()
    except SpecError as err:
        raise err.under(name) from None


@dataclass(frozen=True)
class NeuronSpec:
    """A spiking neuron.

    ``model = "lif"`` is Ma et al. eq. 2-3: ``u[t] = d*(u[t-1] - theta*o[t-1]) + sum_j w_j x_j[t]``,
    ``o[t] = [u[t] >= theta]`` with ``d = exp(-1/tau)`` (soft reset by subtraction).

    ``model = "decolle"`` is Kaiser et al. eq. 4: ``U = sum_j W_j P_j - rho*R + b``, ``S = [U >
    theta]`` (strict: :func:`fires`), ``P <- alpha P + (1-alpha) Q``, ``Q <- beta Q + (1-beta) S_in``, ``R <- gamma R +
    (1-gamma) S`` with ``alpha, beta, gamma = exp(-1/tau), exp(-1/tau_syn), exp(-1/tau_ref)``;
    P, Q and R are stored in ``trace``. ``trace_order`` says which ``Q`` the membrane trace ``P``
    takes: ``"paper"`` (eq. 4 as printed) the ``Q`` of this step before its update, so that an
    input spike of step ``t`` reaches ``U`` at ``t+2``; ``"decolle-public"`` (the authors' public
    code) this step's updated ``Q``, ``P <- alpha P + (1-alpha) (beta Q + (1-beta) S_in)``, one
    step of latency: :func:`advance_traces`.
    """

    model: str = "lif"
    tau: float = 1.0
    threshold: float = 1.0
    leak: str = "multiply"
    potential: FixedFormat = field(default_factory=lambda: _fmt(16, 8))
    decay: FixedFormat = field(default_factory=lambda: _fmt(8, 8, signed=False, rounding="nearest"))
    tau_syn: float = 1.0
    tau_ref: float = 2.0
    rho: float = 1.0
    trace: FixedFormat = field(default_factory=lambda: _fmt(16, 14, signed=False))
    trace_order: str = "paper"

    def __post_init__(self) -> None:
        _check_choice("model", self.model, NEURON_MODELS)
        _check_choice("trace_order", self.trace_order, TRACE_ORDERS)
        _check_float("tau", self.tau, positive=True)
        _check_float("threshold", self.threshold)
        _check_choice("leak", self.leak, LEAKS)
        for name in ("potential", "decay", "trace"):
            if not isinstance(getattr(self, name), FixedFormat):
                _fail(name, f"expected a FixedFormat, got {getattr(self, name)!r}")
        if not self.potential.signed:
            _fail("potential", f"{self.potential.describe()} is unsigned; membrane potentials need a signed format")
        if self.decay.signed:
            _fail("decay", f"{self.decay.describe()} is signed; decay multipliers use an unsigned format")
        for name in ("potential", "decay", "trace"):
            if getattr(self, name).rounding == "stochastic":
                _fail(f"{name}.rounding", "'stochastic' is only allowed for weights (the learning-rate shift); use 'floor' or 'nearest'")
        self.potential.represent(self.threshold, "threshold")
        if self.model == "lif" and self.threshold <= 0:
            _fail("threshold", f"{self.threshold!r} must be positive for a LIF neuron (it would fire with no input)")
        make_decay("tau", self.tau, self.leak, self.decay)
        if self.model == "decolle":
            _check_float("tau_syn", self.tau_syn, positive=True)
            _check_float("tau_ref", self.tau_ref, positive=True)
            _check_float("rho", self.rho)
            if self.rho < 0:
                _fail("rho", f"{self.rho!r} must be >= 0 (the refractory weight inhibits)")
            self.potential.represent(self.rho, "rho")
            make_decay("tau_syn", self.tau_syn, self.leak, self.decay)
            make_decay("tau_ref", self.tau_ref, self.leak, self.decay)
            if self.trace.signed:
                _fail("trace", f"{self.trace.describe()} is signed; DECOLLE traces P, Q, R are never negative: use an unsigned format")
            if self.trace.frac < 1 or self.trace.max_int < (1 << self.trace.frac):
                _fail("trace", f"{self.trace.describe()} cannot hold 1.0, the largest value of a trace")

    @property
    def threshold_int(self) -> int:
        return self.potential.represent(self.threshold, "threshold")

    @property
    def rho_int(self) -> int:
        return self.potential.represent(self.rho, "rho")

    @property
    def alpha(self) -> Decay:
        """Membrane decay (LIF ``d``; DECOLLE ``alpha``)."""
        return make_decay("tau", self.tau, self.leak, self.decay)

    @property
    def beta(self) -> Decay:
        return make_decay("tau_syn", self.tau_syn, self.leak, self.decay)

    @property
    def gamma(self) -> Decay:
        return make_decay("tau_ref", self.tau_ref, self.leak, self.decay)


@dataclass(frozen=True)
class InitSpec:
    """Seeded random initial weights: integers uniform in ``[-round(scale*2**frac), +...]``.

    ``scale`` is in real units of the weight; ``scale = 0`` (the default) means the fan-in rule
    ``gain / sqrt(fan_in)``. An explicit scale must be representable by the weight format (the
    layer checks it); the fan-in rule's bound is clipped to the format's largest value.
    """

    kind: str = "uniform"
    scale: float = 0.0
    gain: float = 1.0

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, INIT_KINDS)
        _check_float("scale", self.scale)
        if self.scale < 0:
            _fail("scale", f"{self.scale!r} is negative; allowed: 0 (the fan-in rule gain / sqrt(fan_in)) or a positive bound")
        _check_float("gain", self.gain, positive=True)

    def bound(self, fan_in: int, fmt: FixedFormat) -> int:
        """The integer bound ``b`` of the uniform draw in ``[-b, b]``: at least 1, at most the
        format's largest value (so that ``-b`` and ``+b`` both fit)."""
        scale = self.scale if self.scale > 0 else self.gain / math.sqrt(fan_in)
        return min(max(round_half_up(scale * (1 << fmt.frac)), 1), fmt.max_int)

    def check_fits(self, fmt: FixedFormat) -> None:
        """An explicit ``scale`` beyond the largest value of ``fmt`` cannot be drawn: refuse it."""
        if self.scale > 0 and round_half_up(self.scale * (1 << fmt.frac)) > fmt.max_int:
            _fail("scale", f"{self.scale!r} is more than the largest {fmt.describe()} weight ({fmt.to_real(fmt.max_int)!r}); allowed: 0 (the fan-in rule) up to {fmt.to_real(fmt.max_int)!r}")


@dataclass(frozen=True)
class ClassifierSpec:
    """The local classifier attached to a hidden layer.

    ``kind = "spiking"``: a trainable layer of LIF neurons (Ma et al.); ``weight`` is its weight
    format, ``accumulator`` the width of ``sum_i w_ki o_i``. ``kind = "random"``: DECOLLE's fixed
    random readout ``Y = G S`` (eq. 8) with ``G`` in the ``weight`` format, uniform as ``init``
    says, drawn from the ``readout:<l>`` LFSR; the error reaches the layer through the sign-concordant
    feedback ``H = G^T * omega`` (section 2.3.2) quantized into ``feedback``.
    """

    kind: str = "spiking"
    weight: FixedFormat = field(default_factory=lambda: _fmt(16, 12, rounding="stochastic"))
    accumulator: int = 24
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    init: InitSpec = field(default_factory=InitSpec)
    feedback: FixedFormat = field(default_factory=lambda: _fmt(12, 10, rounding="nearest"))

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, CLASSIFIERS)
        if not self.weight.signed:
            _fail("weight", f"{self.weight.describe()} is unsigned; weights need a signed format")
        _check_int("accumulator", self.accumulator, 2, 63)
        if self.kind == "spiking" and self.neuron.model != "lif":
            _fail("neuron.model", f"{self.neuron.model!r}: a spiking classifier uses 'lif' neurons")
        _nested("init", lambda: self.init.check_fits(self.weight))
        if self.kind == "random":
            if not self.feedback.signed:
                _fail("feedback", f"{self.feedback.describe()} is unsigned; the feedback H needs a signed format")
            if self.feedback.rounding == "stochastic":
                _fail("feedback.rounding", "'stochastic' is not allowed for a constant matrix; use 'floor' or 'nearest'")


@dataclass(frozen=True)
class LayerSpec:
    """A fully connected hidden layer of spiking neurons with its local classifier."""

    size: int
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    weight: FixedFormat = field(default_factory=lambda: _fmt(16, 12, rounding="stochastic"))
    accumulator: int = 32
    init: InitSpec = field(default_factory=InitSpec)
    learn: bool = True
    classifier: ClassifierSpec = field(default_factory=ClassifierSpec)

    def __post_init__(self) -> None:
        _check_int("size", self.size, 1, 1 << 20)
        if not self.weight.signed:
            _fail("weight", f"{self.weight.describe()} is unsigned; weights need a signed format")
        _check_int("accumulator", self.accumulator, 2, 63)
        _nested("init", lambda: self.init.check_fits(self.weight))
        # the pairings golden and the RTL implement: a LIF layer reports to a spiking classifier
        # (Ma et al.), a DECOLLE layer to a fixed random readout (Kaiser et al.), whatever the rule
        if self.neuron.model == "lif" and self.classifier.kind != "spiking":
            _fail("classifier.kind", f"{self.classifier.kind!r}: a layer of 'lif' neurons has a 'spiking' classifier (a 'random' readout goes with 'decolle' neurons)")
        if self.neuron.model == "decolle" and self.classifier.kind != "random":
            _fail("classifier.kind", f"{self.classifier.kind!r}: a layer of 'decolle' neurons has a 'random' readout (a 'spiking' classifier goes with 'lif' neurons)")
        if not isinstance(self.learn, bool):
            _fail("learn", f"expected true or false, got {self.learn!r}")


@dataclass(frozen=True)
class EncodingSpec:
    """How a pixel of intensity ``I in [0, 1]``, or an event stream, enters the first layer.

    ``direct``: the pixel, quantized into ``format``, is the input current at every step (Ma et
    al. feed images this way). ``rate``: at each step input j spikes when an LFSR draw ``r``
    (the low ``format.frac`` bits) is below the quantized pixel: ``P(spike) = I``. ``latency``:
    one spike at ``t_s = round(T - T*I)`` (Ma et al. eq. 17, steps numbered from 0, ties
    rounded up); ``t_s = T`` (a black pixel) means no spike.

    ``events``: a sample is already a sequence of ``T`` steps, the events of a recording binned
    over its first ``window_us`` microseconds (:func:`localsnn.events.bin_events`; channels by
    ``polarity`` and ``downsample``). Input j at step t is the number of events in its bin,
    saturated at ``format.max_int``: with a 1-bit ``format`` (``u1.0``) a spike, with a wider
    one a multi-bit input current like ``direct``'s (``frac`` must be 0: a count is an integer).
    """

    kind: str = "direct"
    format: FixedFormat = field(default_factory=lambda: _fmt(8, 8, signed=False, rounding="nearest"))
    #: events only: the time binned into the ``T`` steps, microseconds from the recording's start
    window_us: int = 0
    #: events only: both polarities as separate channels, merged, or one of them
    polarity: str = "both"
    #: events only: the sensor's x and y divided by this (pixels pooled)
    downsample: int = 1

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, ENCODINGS)
        if self.format.signed:
            _fail("format", f"{self.format.describe()} is signed; pixel intensities use an unsigned format")
        if self.format.rounding == "stochastic":
            _fail("format.rounding", "'stochastic' is not allowed for pixel quantization; use 'floor' or 'nearest'")
        _check_int("window_us", self.window_us, 0, 1 << 40)
        _check_choice("polarity", self.polarity, EVENT_POLARITIES)
        _check_int("downsample", self.downsample, 1, 1 << 10)
        if self.kind == "events":
            if self.window_us < 1:
                _fail("window_us", "an events encoding needs the binned time window, in microseconds (e.g. 300000 for N-MNIST's three saccades)")
            if self.format.frac != 0:
                _fail("format.frac", f"{self.format.frac}: an event bin holds a count, an integer; allowed for kind = 'events': 0")
            if self.format.width > MAX_EVENT_BITS:
                _fail("format.width", f"{self.format.width} bits: an event count is saturated to at most {MAX_EVENT_BITS} bits; allowed for kind = 'events': 1 (spikes) to {MAX_EVENT_BITS}")
        else:
            for name, value, default in (("window_us", self.window_us, 0), ("polarity", self.polarity, "both"), ("downsample", self.downsample, 1)):
                if value != default:
                    _fail(name, f"{value!r} is for kind = 'events' only; this encoding is {self.kind!r} (leave it out)")

    @property
    def binary(self) -> bool:
        """True when the first layer receives spikes (0/1) rather than multi-bit values."""
        return self.kind in ("rate", "latency") or (self.kind == "events" and self.format.width == 1)

    @property
    def per_step(self) -> bool:
        """True when a sample holds its input for every step (``events``: shape ``(T, inputs)``),
        False when it is one value per input (pixels, encoded on chip)."""
        return self.kind == "events"


def fires(model: str, u: Any, theta: Any) -> Any:
    """The spike condition of a neuron ``model``, the one definition golden (numpy), the float
    learners (torch) and the RTL (Amaranth values) evaluate:

    - ``lif``:     ``o = [u >= theta]``  (Ma et al. eq. 3)
    - ``decolle``: ``S = [U > theta]``   (Kaiser et al. eq. 4's ``Theta(U - theta)``, strict)

    DECOLLE's comparison is strict so that a neuron at rest does not fire: its potential is
    ``U = W P + b - rho R``, exactly 0 before any input has arrived when the bias is 0 (as
    initialised) and the threshold is the paper's 0; with ``>=`` every neuron would fire at the
    first step of every sample (and the readout's column sums join the decision). A LIF neuron
    is at rest at ``u = 0 < theta`` (the spec requires ``theta > 0`` there).
    """
    return u > theta if model == "decolle" else u >= theta


def advance_traces(order: str, Q: Any, x: Any, step_p: Any, step_q: Any) -> tuple[Any, Any]:
    """DECOLLE's input traces for the next step, the one order golden (integers), the float model
    (tensors) and the RTL (Amaranth values) follow; ``step_p(v)`` and ``step_q(v)`` return ``P``
    and ``Q`` moved towards ``v`` (``P + (1-alpha)(v - P)``, rounded and fitted in the caller's
    arithmetic)::

        Q' = Q + (1-beta) (x - Q)                      this step's input x
        P' = P + (1-alpha) (Q - P)     "paper": eq. 4 as printed, this step's Q before its update
        P' = P + (1-alpha) (Q' - P)    "decolle-public": the authors' code, the updated Q

    With ``"paper"`` an input reaches ``P``, hence ``U``, two steps after it arrives; with
    ``"decolle-public"`` one.
    """
    q_new = step_q(x)
    p_new = step_p(q_new if order == "decolle-public" else Q)
    return p_new, q_new


def surrogate_function(kind: str, width: float, x: Any, exp: Any = math.exp, indicator: Any = float) -> Any:
    """The surrogate derivative ``sigma'`` at distance ``x = |u - theta| >= 0`` from the threshold
    (:class:`SurrogateSpec`), the one definition the table (floats: ``math.exp``, ``float``) and
    the float learners (tensors: ``torch.exp`` and a cast of the comparison to the potential's
    dtype) evaluate:

    - ``exp``:    ``exp(-x / width)``                 (Ma et al. eq. 7 with ``width = 1``)
    - ``rect``:   ``[x < width / 2] / width``         (Guo et al.)
    - ``boxcar``: ``[x <= width / 2]``                (Kaiser et al., DECOLLE, ``width = 1``)
    """
    if kind == "exp":
        return exp(-x / width)
    if kind == "rect":
        return indicator(x < width / 2) / width
    return indicator(x <= width / 2)


@dataclass(frozen=True)
class SurrogateSpec:
    """The surrogate derivative ``sigma'(u)`` as a lookup table over ``x = |u - theta|``.

    ``exp``: ``exp(-x / width)`` (Ma et al. eq. 7 with ``width = 1``); ``rect``: ``1/width`` when
    ``x < width/2`` (Guo et al.); ``boxcar``: ``1`` when ``x <= width/2`` (DECOLLE, ``width = 1``).
    Entry ``k`` holds the function at ``x = k * 2**-step_frac`` rounded into ``format``; the
    table has ``size`` entries and is 0 beyond them. The index is ``|u - theta| >>
    (potential.frac - step_frac)``.
    """

    kind: str = "exp"
    width: float = 1.0
    format: FixedFormat = field(default_factory=lambda: _fmt(8, 7, signed=False, rounding="nearest"))
    step_frac: int = 4
    size: int = 128

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, SURROGATES)
        _check_float("width", self.width, positive=True)
        if self.format.signed:
            _fail("format", f"{self.format.describe()} is signed; surrogate derivatives are never negative: use an unsigned format")
        if self.format.rounding == "stochastic":
            _fail("format.rounding", "'stochastic' is not allowed for a constant table; use 'floor' or 'nearest'")
        _check_int("step_frac", self.step_frac, 0, 32)
        _check_int("size", self.size, 1, 1 << 16)
        if max(self.table) == 0:
            _fail("format", f"every entry of the surrogate table rounds to 0 in {self.format.describe()}: use more fractional bits")

    def function(self, x: float) -> float:
        """The surrogate at distance ``x = |u - theta| >= 0`` from the threshold, in float."""
        return surrogate_function(self.kind, self.width, x)

    @cached_property
    def table(self) -> tuple[int, ...]:
        """The integer lookup table, computed once; golden and RTL both import it."""
        step = 2.0**-self.step_frac
        fmt = self.format
        rnd = math.floor if fmt.rounding == "floor" else round_half_up
        return tuple(min(rnd(self.function(k * step) * (1 << fmt.frac)), fmt.max_int) for k in range(self.size))


@dataclass(frozen=True)
class LearningSpec:
    """The on-chip learning rule and its arithmetic.

    ``rule``: ``none``, ``ell`` (Ma et al. eq. 5-7), ``fell`` (eq. 12-14) or ``decolle`` (Kaiser
    et al. eq. 7-8). The learning rate is ``eta = 2**-lr_shift``; a weight change is shifted into
    the weight format and rounds as that format says (``floor``, ``nearest`` or ``stochastic``
    from the layer's ``round`` LFSR); weights saturate (or wrap) as their format says. ``accumulate = K`` sums K steps of updates at full
    precision and applies them every K steps (and at the end of a sample). ``error`` is the format
    of a hidden neuron's local error ``delta``; ``trace`` the format of FELL's per-synapse
    eligibility traces.
    """

    rule: str = _rules.DEFAULT
    lr_shift: int = 8
    accumulate: int = 1
    error: FixedFormat = field(default_factory=lambda: _fmt(16, 12, rounding="nearest"))
    trace: FixedFormat = field(default_factory=lambda: _fmt(16, 12, rounding="nearest"))
    surrogate: SurrogateSpec = field(default_factory=SurrogateSpec)

    def __post_init__(self) -> None:
        _check_choice("rule", self.rule, RULES)
        _check_int("lr_shift", self.lr_shift, 0, 62)
        _check_int("accumulate", self.accumulate, 1)
        if not self.error.signed:
            _fail("error", f"{self.error.describe()} is unsigned; errors are signed")
        if self.error.rounding == "stochastic":
            _fail("error.rounding", "'stochastic' is not allowed for the local error; use 'floor' or 'nearest'")
        if not self.trace.signed:
            _fail("trace", f"{self.trace.describe()} is unsigned; eligibility traces can be negative")
        if self.trace.rounding == "stochastic":
            _fail("trace.rounding", "'stochastic' is not allowed for eligibility traces; use 'floor' or 'nearest'")


@dataclass(frozen=True)
class LFSRSpec:
    """The linear-feedback shift registers behind every random number (see golden.lfsr).

    Each named stream (``encode``, ``init``, ``readout:<l>``, ``round:<l>``,
    ``round:<l>.clf``) is its own ``width``-bit Galois LFSR whose seed is derived from ``seed``.
    """

    width: int = 32
    seed: int = 1

    def __post_init__(self) -> None:
        _check_int("width", self.width)
        if self.width not in LFSR_WIDTHS:
            _fail("width", f"{self.width} has no maximal-length tap table; allowed: {', '.join(map(str, LFSR_WIDTHS))}")
        _check_int("seed", self.seed, 1, (1 << 64) - 1)


@dataclass(frozen=True)
class NetworkSpec:
    """A feed-forward SNN of hidden layers, each with a local classifier, and its learning rule.

    The network's decision is the classifier of the last hidden layer (spike count for spiking
    classifiers, the summed readout for random ones); every layer's decision is available.
    """

    name: str
    inputs: int
    layers: tuple[LayerSpec, ...]
    classes: int = 10
    timesteps: int = 10
    encoding: EncodingSpec = field(default_factory=EncodingSpec)
    learning: LearningSpec = field(default_factory=LearningSpec)
    lfsr: LFSRSpec = field(default_factory=LFSRSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            _fail("name", f"expected a non-empty string, got {self.name!r}")
        # the name becomes folder and file names (runs/<name>/..., build trees): a plain name only
        if not _PLAIN_NAME.fullmatch(self.name) or set(self.name) == {"."}:
            _fail("name", f"{self.name!r} is not a plain name; allowed: letters, digits, '-', '_' and '.', starting with a letter or digit")
        _check_int("inputs", self.inputs, 1, 1 << 20)
        _check_int("classes", self.classes, 2, 1 << 16)
        _check_int("timesteps", self.timesteps, 1, 1 << 16)
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.layers, tuple) or not self.layers:
            _fail("layers", "a network needs at least one hidden layer")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerSpec):
                _fail(f"layers[{i}]", f"expected a LayerSpec, got {layer!r}")
        if self.learning.accumulate > self.timesteps:
            _fail(
                "learning.accumulate",
                f"{self.learning.accumulate} is more than timesteps = {self.timesteps}; allowed: 1 to {self.timesteps}",
            )
        self._check_rule()
        self._check_surrogate_resolution()
        self._check_accumulators()
        self._check_lr_shift()
        self._check_trace_fracs()
        self._check_work_widths()

    # -- cross-field checks -------------------------------------------------------------------

    def _check_rule(self) -> None:
        rule = self.rule
        for i, layer in enumerate(self.layers):
            if rule.neuron is not None and layer.neuron.model != rule.neuron:
                _fail(f"layers[{i}].neuron.model", f"{layer.neuron.model!r}: learning.rule {rule.name!r} needs {rule.neuron!r} neurons")

    def _check_surrogate_resolution(self) -> None:
        if not self.rule.learns:
            return
        step = self.learning.surrogate.step_frac
        for i, layer in enumerate(self.layers):
            pots = [(f"layers[{i}].neuron.potential", layer.neuron.potential)]
            if layer.classifier.kind == "spiking":
                pots.append((f"layers[{i}].classifier.neuron.potential", layer.classifier.neuron.potential))
            for where, pot in pots:
                if step > pot.frac:
                    _fail(
                        "learning.surrogate.step_frac",
                        f"{step} is finer than {where} ({pot.describe()}, {pot.frac} fractional bits); allowed: 0 to {pot.frac}",
                    )

    def _check_trace_fracs(self) -> None:
        """A trace must hold its input exactly: FELL's eligibility traces add ``x`` (pixels or
        spikes), DECOLLE's Q adds the raw input."""
        for i, layer in enumerate(self.layers):
            raw = self.encoding.format.frac if i == 0 and not self.encoding.binary else 0
            if layer.neuron.model == "decolle" and layer.neuron.trace.frac < raw:
                _fail(f"layers[{i}].neuron.trace.frac", f"{layer.neuron.trace.frac} is less than the input's {raw} fractional bits; allowed: {raw} or more")
            if self.rule.traces and self.learning.trace.frac < raw:
                _fail("learning.trace.frac", f"{self.learning.trace.frac} is less than the {raw} fractional bits of layers[{i}]'s input; allowed: {raw} or more")

    def _check_work_widths(self) -> None:
        """Every intermediate the golden model forms must fit its 64-bit integers."""
        lrn = self.learning
        s_bits = lrn.surrogate.format.width
        # accumulate = K sums K raw changes at full precision before the shift
        acc_bits = (lrn.accumulate - 1).bit_length()
        acc_what = f", summed over accumulate = {lrn.accumulate} steps" if lrn.accumulate > 1 else ""
        for i, layer in enumerate(self.layers):
            n = layer.neuron
            x_max, _ = self.input_format(i)
            d_bits = n.decay.width + 1
            checks = [
                (f"layers[{i}].neuron.potential", "the decay product u * d", n.potential.width + d_bits),
            ]
            # the synaptic current I = R_U(sum, f_w + f_in - f_u) is the accumulator shifted left
            # where the potential has more fractional bits than the product, then D(u) + I
            clf = layer.classifier
            _, x_frac = self.input_format(i)
            pops = [(f"layers[{i}].accumulator", layer.accumulator, layer.weight.frac + x_frac - n.potential.frac, n)]
            if clf.kind == "spiking":
                pops.append((f"layers[{i}].classifier.accumulator", clf.accumulator, clf.weight.frac - clf.neuron.potential.frac, clf.neuron))
            for where, acc, shift, nrn in pops:
                cur = acc + max(0, -shift)
                checks.append((where, f"the synaptic current (the {acc}-bit sum shifted left by {max(0, -shift)})", cur))
                checks.append((where, "the new potential D(u - theta o) + I", max(nrn.potential.width + 1 + nrn.decay.width, cur) + 1))
            if n.model == "decolle":
                checks.append((f"layers[{i}].neuron.trace", "the refractory product rho * R", n.potential.width + n.trace.width + 1))
                if i == 0 and not self.encoding.binary:  # a pixel in trace units, x << (f_P - f_in), into (1 - beta)(x - Q)
                    pix = self.encoding.format
                    checks.append((f"layers[{i}].neuron.trace", "the pixel in trace units times (1 - beta)", pix.width + n.trace.frac - pix.frac + 1 + d_bits + 1))
                checks.append((f"layers[{i}].neuron.trace", "the trace product (1 - alpha) * (Q - P)", n.trace.width + d_bits + 1))
            rule = self.rule
            if rule.learns and n.model == "lif":  # the error through the spiking classifier
                g_bits = clf.weight.width + s_bits + 1 + self.classes.bit_length()
                # narrowed into the error format by f_wa + 2 f_s - f_E: a left shift where negative
                left = max(0, lrn.error.frac - clf.weight.frac - 2 * lrn.surrogate.format.frac)
                checks.append(("learning.surrogate.format", "the hidden error sum_k w^a_ik delta^a_k * sigma'(u_i)" + (f" shifted left by {left} into learning.error" if left else ""), g_bits + s_bits + left))
                pre_bits = lrn.trace.width if rule.traces else x_max.bit_length() + 1
                checks.append(("learning.error", "the weight change delta * pre" + acc_what, lrn.error.width + pre_bits + 1 + acc_bits))
            if rule.traces:
                pops = [(f"layers[{i}].neuron", n), (f"layers[{i}].classifier.neuron", clf.neuron)]
                for where, nrn in pops:
                    # one - theta * lut (theta > 0, lut >= 0), then times the decay multiplier
                    one_minus = max(1 << (nrn.potential.frac + lrn.surrogate.format.frac), nrn.threshold_int * lrn.surrogate.format.max_int)
                    checks.append((where, "FELL's factor D(1 - theta sigma'(u))", _bits_signed(one_minus) + d_bits))
                    c_bits = _bits_signed(self.fell_factor_bound(nrn))
                    checks.append(("learning.trace", "the trace product e * c (c = D(1 - theta sigma'(u)), up to "
                                   f"{c_bits} bits with {where}.threshold = {nrn.threshold!r})", lrn.trace.width + c_bits + 1))
            if rule.learns and n.model == "decolle":  # the error through the random readout
                err_bits = clf.feedback.width + layer.size.bit_length() + clf.weight.width + self.classes.bit_length() + 2
                left = max(0, lrn.error.frac - clf.feedback.frac - clf.weight.frac - lrn.surrogate.format.frac)
                checks.append((f"layers[{i}].classifier.feedback", "the readout error sum_k H_ik (Y_k - Yhat_k) * sigma'(U_i)" + (f" shifted left by {left} into learning.error" if left else ""), err_bits + s_bits + left))
                checks.append(("learning.error", "the weight change delta * P" + acc_what, lrn.error.width + n.trace.width + 2 + acc_bits))
            for where, what, bits in checks:
                if bits > MAX_WORK_BITS:
                    _fail(where, f"too wide: {what} needs {bits} bits, more than the {MAX_WORK_BITS} the golden model computes with; use narrower formats")

    def fell_factor_bound(self, neuron: NeuronSpec) -> int:
        """A bound on ``|c|`` of FELL's trace factor ``c = R_T(D(1 - theta lut(u)), f_u + f_s -
        f_T)`` (``Golden._fell_factor``) for a population of ``neuron``, in the trace format's
        units: ``1 - theta lut`` lies in ``[1 - theta lut_max, 1]`` (``theta > 0``, ``lut >=
        0``), a leak multiplies it by at most ``multiplier / 2**f_d`` (shift form: at most 1),
        and every rounding right shift adds at most 1 to a magnitude. It is what golden's
        integer types and the RTL's factor memory are sized by; it grows with the threshold
        and the surrogate's largest value, not only with the trace format."""
        lrn = self.learning
        f_s = lrn.surrogate.format.frac
        f_u = neuron.potential.frac
        v = max(1 << (f_u + f_s), neuron.threshold_int * max(lrn.surrogate.table) - (1 << (f_u + f_s)))
        d = neuron.alpha
        leaked = ((v * d.multiplier) >> d.frac) + 1 if d.mode == "multiply" else v + 1
        s = f_u + f_s - lrn.trace.frac
        return (leaked >> s) + 1 if s > 0 else leaked << -s

    def input_format(self, layer: int) -> tuple[int, int]:
        """``(largest input value as an integer, its fractional bits)`` of the values that drive
        ``layers[layer]``'s synapses: pixels, spikes (1, frac 0) or DECOLLE traces P."""
        return input_format(self.encoding, self.layers, layer)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample's input integers: ``(timesteps, inputs)`` for an ``events``
        encoding (a value per input per step), else ``(inputs,)`` (quantized pixels)."""
        return (self.timesteps, self.inputs) if self.encoding.per_step else (self.inputs,)

    def fan_in(self, layer: int) -> int:
        return self.inputs if layer == 0 else self.layers[layer - 1].size

    def accumulator_needs(self, layer: int) -> tuple[tuple[int, str], tuple[int, str]]:
        """``((bits, why), (bits, why))``: the narrowest accumulator of ``layers[layer]`` and of
        its classifier that hold their worst-case sums, and how that sum is made up."""
        return accumulator_needs(self.inputs, self.encoding, self.layers, layer)

    def _check_accumulators(self) -> None:
        for i, layer in enumerate(self.layers):
            (need, what), (c_need, c_what) = self.accumulator_needs(i)
            if layer.accumulator < need:
                _fail(
                    f"layers[{i}].accumulator",
                    f"{layer.accumulator} bits is too narrow for the worst-case sum of the layer "
                    f"({what}), which needs {need} bits; allowed: {need} to 63",
                )
            if layer.classifier.accumulator < c_need:
                _fail(
                    f"layers[{i}].classifier.accumulator",
                    f"{layer.classifier.accumulator} bits is too narrow for the worst-case sum of the classifier "
                    f"({c_what}), which needs {c_need} bits; allowed: {c_need} to 63",
                )

    def update_shifts(self) -> dict[str, int]:
        """Right shift that turns ``delta * pre`` into a weight change, per learning block.

        Keys are ``"<l>"`` (hidden weights of layer l) and ``"<l>.clf"`` (its spiking
        classifier). The shift includes ``lr_shift``: ``dw = round((-delta * pre) >> shift)``
        with ``delta`` and ``pre`` as the rule defines them (see golden.model).
        """
        return {key: base + self.learning.lr_shift for key, (base, _fmt_) in self._update_blocks().items()}

    def _update_blocks(self) -> dict[str, tuple[int, FixedFormat]]:
        """``{block: (update shift without lr_shift, weight format)}`` of every learning block."""
        rule = self.rule
        lrn = self.learning
        f_s = lrn.surrogate.format.frac
        out: dict[str, tuple[int, FixedFormat]] = {}
        if not rule.learns:
            return out
        for i, layer in enumerate(self.layers):
            if not layer.learn:
                continue
            _, x_frac = self.input_format(i)
            pre_frac = lrn.trace.frac if rule.traces else x_frac
            out[f"{i}"] = (lrn.error.frac + pre_frac - layer.weight.frac, layer.weight)
            if layer.classifier.kind == "spiking":
                pre_frac = lrn.trace.frac if rule.traces else 0
                out[f"{i}.clf"] = (f_s + pre_frac - layer.classifier.weight.frac, layer.classifier.weight)
        return out

    def lr_shift_range(self) -> tuple[int, int]:
        """Allowed ``learning.lr_shift`` values: every update shift must be >= 0, and <= the
        LFSR width where the weight format rounds stochastically (the random addend has that
        many bits)."""
        blocks = self._update_blocks().values()
        if not blocks:
            return 0, 62
        lo = max(0, *(-base for base, _ in blocks))
        hi = min(62 - base if fmt.rounding != "stochastic" else self.lfsr.width - base for base, fmt in blocks)
        return lo, hi

    def _check_lr_shift(self) -> None:
        lo, hi = self.lr_shift_range()
        lr = self.learning.lr_shift
        if lo > hi:
            stoch = [b for b, (base, fmt) in self._update_blocks().items() if fmt.rounding == "stochastic" and self.lfsr.width - base == hi]
            if stoch:  # the top of the range is the LFSR's width (the random addend's bits)
                block = stoch[0]
                base = self.lfsr.width - hi
                wider = [str(w) for w in LFSR_WIDTHS if w - base >= lo]
                field_ = f"layers[{block.split('.')[0]}].{'classifier.' if block.endswith('.clf') else ''}weight.rounding"
                _fail(
                    "lfsr.width",
                    f"{self.lfsr.width} is too narrow for stochastic rounding: with {field_} = 'stochastic' an update shift "
                    f"(at least {lo + base} here) may not exceed the LFSR's {self.lfsr.width} random bits, so no learning.lr_shift "
                    f"works; allowed: lfsr.width {', '.join(wider) or '(none is wide enough)'}, or 'floor' / 'nearest' rounding for that weight",
                )
            _fail(
                "learning.lr_shift",
                f"no learning-rate shift works with these formats (it would need to be >= {lo} and <= {hi}); "
                "narrow the gap between the error/trace fractional bits and the weight fractional bits",
            )
        if not lo <= lr <= hi:
            _fail(
                "learning.lr_shift",
                f"{lr} is out of range for these formats; allowed: {lo} to {hi} "
                "(each update shift, error/trace frac + input frac + lr_shift - weight frac, must be >= 0, "
                f"and <= lfsr.width = {self.lfsr.width} where weights round stochastically)",
            )

    # -- derived quantities -------------------------------------------------------------------

    @property
    def decision_layer(self) -> int:
        return len(self.layers) - 1

    @property
    def rule(self) -> _rules.Rule:
        """The registry's entry (:mod:`localsnn.rules`) of ``learning.rule``."""
        return _rules.rule(self.learning.rule)

    def with_rule(self, rule: str) -> "NetworkSpec":
        """A copy with another learning rule (layers must already suit it)."""
        return replace(self, learning=replace(self.learning, rule=rule))


def input_format(inputs_encoding: "EncodingSpec", layers: tuple[LayerSpec, ...], layer: int) -> tuple[int, int]:
    """``(largest input value as an integer, its fractional bits)`` of the values that drive
    ``layers[layer]``'s synapses: pixels, spikes (1, frac 0) or DECOLLE traces P."""
    neuron = layers[layer].neuron
    if neuron.model == "decolle":
        return neuron.trace.max_int, neuron.trace.frac
    if layer == 0 and not inputs_encoding.binary:
        return inputs_encoding.format.max_int, inputs_encoding.format.frac
    return 1, 0


def accumulator_needs(inputs: int, encoding: "EncodingSpec", layers: tuple[LayerSpec, ...], layer: int) -> tuple[tuple[int, str], tuple[int, str]]:
    """:meth:`NetworkSpec.accumulator_needs` from the parts of a network (before it is built)."""
    ls = layers[layer]
    x_max, x_frac = input_format(encoding, layers, layer)
    fan_in = inputs if layer == 0 else layers[layer - 1].size
    worst = fan_in * ls.weight.max_abs * x_max
    what = f"{fan_in} inputs x |w| <= {ls.weight.max_abs} ({ls.weight.describe()}) x x <= {x_max}"
    if ls.neuron.model == "decolle":  # the bias is a weight on a constant input 1.0
        worst += ls.weight.max_abs * (1 << x_frac)
        what += " plus the bias"
    clf = ls.classifier
    c_worst = ls.size * clf.weight.max_abs
    c_what = f"{ls.size} spikes x |w| <= {clf.weight.max_abs}"
    return (_bits_signed(worst), f"{what} = {worst}"), (_bits_signed(c_worst), f"{c_what} = {c_worst}")


# --------------------------------------------------------------------------------------------
# TOML in and out
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` (parsed TOML) against the annotation ``tp`` and build it."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            _fail(path, f"expected an array of tables, got {value!r}")
        return tuple(_convert(item_tp, item, f"{path}[{k}]") for k, item in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(path, f"expected a table, got {value!r} ({type(value).__name__})")
        return from_dict(tp, value, path)
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - every annotation of the spec is handled above
        raise TypeError(f"unsupported annotation {tp!r}")
    if not ok:
        _fail(path, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build the spec dataclass ``cls`` from a TOML table, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail(where, f"unknown key{hint}; allowed keys: {', '.join(names)}")
        kwargs[key] = _convert(hints[key], value, where)
    missing = [f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs]
    if missing:
        _fail(path or cls.__name__, f"missing required key(s): {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except SpecError as err:
        raise err.under(path) from None


def to_dict(obj: Any) -> dict[str, Any]:
    """The TOML table of a spec dataclass, every field written out."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = [to_dict(v) for v in value]
        else:
            out[f.name] = value
    return out


def loads(text: str, source: str = "<string>") -> NetworkSpec:
    """Parse a spec from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError("", f"{source} is not valid TOML: {err}") from None
    return from_dict(NetworkSpec, data)


def dumps(spec: NetworkSpec) -> str:
    return tomli_w.dumps(to_dict(spec))


BUILTIN_DIR = Path(__file__).parent / "specs"


def builtin_specs() -> list[str]:
    """Names of the example specs shipped with the package (``localsnn/specs/*.toml``)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def resolve(path_or_name: str | Path) -> Path:
    """A spec file path: an existing file, or the name of a shipped example spec."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    builtin = BUILTIN_DIR / f"{path_or_name}.toml"
    if builtin.is_file():
        return builtin
    raise SpecError(
        "",
        f"no spec file {str(path_or_name)!r}; give a path to a TOML file or one of the shipped specs: "
        + ", ".join(builtin_specs()),
    )


def load(path_or_name: str | Path) -> NetworkSpec:
    """Load a spec from a TOML file, or a shipped example by name (``digits``, ``mnist``...)."""
    path = resolve(path_or_name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError("", f"cannot read {path}: {err.strerror}") from None
    try:
        return loads(text, str(path))
    except SpecError as err:
        raise SpecError(err.field, f"{err.detail} (in {path})") from None


def save(spec: NetworkSpec, path: str | Path) -> None:
    Path(path).write_text(dumps(spec), encoding="utf-8")


__all__ = [
    "ClassifierSpec",
    "Decay",
    "EncodingSpec",
    "FixedFormat",
    "InitSpec",
    "LayerSpec",
    "LearningSpec",
    "LFSRSpec",
    "NetworkSpec",
    "NeuronSpec",
    "SurrogateSpec",
    "builtin_specs",
    "dumps",
    "load",
    "loads",
    "make_decay",
    "save",
]
