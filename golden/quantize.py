"""Float arrays into the golden model's integers: the one rule for every importer of float
weights (``localsnn export`` of a float checkpoint, ``localsnn nir import``).

:func:`quantize` turns float arrays into integers of a :class:`~localsnn.spec.FixedFormat`:
``round(w * 2**frac)`` with the format's rounding for a single shift (``floor``: toward minus
infinity; ``nearest``: half up; ``stochastic``: half up too: an export is made once and should
be the closest value, not a random one), then **saturated** into the format's range, whatever
its ``overflow`` says (a wrapped weight would change sign), and every saturated value counted.
:func:`to_params` maps per-layer float arrays (``w`` (fan_in, size), ``clf_w`` (size,
classes), for DECOLLE also ``bias`` and ``feedback``) onto :class:`~localsnn.golden.params.Params`
in the formats the spec gives each array; :func:`describe_report` prints what saturated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from localsnn.errors import WeightsError
from localsnn.golden.params import LayerParams, Params, _expected, check_params
from localsnn.spec import FixedFormat, NetworkSpec


def quantize(a, fmt: FixedFormat, name: str = "array") -> tuple[np.ndarray, int]:
    """Float array to ``fmt`` integers (see module docstring). Returns ``(ints, saturated)``."""
    a = np.asarray(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        raise WeightsError(f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or inf): training diverged; export an earlier checkpoint or lower --lr")
    scaled = np.ldexp(a, fmt.frac)
    ints = np.floor(scaled) if fmt.rounding == "floor" else np.floor(scaled + 0.5)
    saturated = int(np.count_nonzero(ints < fmt.min_int) + np.count_nonzero(ints > fmt.max_int))
    return np.clip(ints, fmt.min_int, fmt.max_int).astype(np.int64), saturated


@dataclass
class ArrayReport:
    """How one array was quantized."""

    layer: int
    name: str
    format: str
    count: int
    saturated: int
    max_abs: float
    range: tuple[float, float]


def to_params(spec: NetworkSpec, weights: list[dict[str, np.ndarray]], source: str = "the float model") -> tuple[Params, list[ArrayReport]]:
    """Quantize per-layer float arrays into golden's parameters for ``spec``.

    A missing, extra or misshapen array is a :class:`WeightsError` naming it (an extra one,
    e.g. DECOLLE's ``bias`` for a spec of LIF layers, means the float net is another kind of
    network than the spec's).
    """
    expected = _expected(spec)
    if len(weights) != len(expected):
        raise WeightsError(f"{source} has {len(weights)} hidden layer(s); the spec {spec.name!r} has {len(expected)}")
    layers, report = [], []
    for i, (got, exp) in enumerate(zip(weights, expected)):
        kw = {}
        extra = sorted(set(got) - set(exp))
        if extra:
            raise WeightsError(
                f"{source}, layer {i}: arrays {', '.join(extra)} have no place in the spec {spec.name!r} (it holds {', '.join(exp)}): "
                "the float net is another kind of network than the spec's layers (e.g. DECOLLE trained on a spec of LIF layers); export into a spec of the same neurons"
            )
        for name, (shape, fmt) in exp.items():
            if name not in got:
                raise WeightsError(f"{source}, layer {i}: no {name!r} array, which the spec {spec.name!r} needs (it has {', '.join(sorted(got))})")
            a = np.asarray(got[name], dtype=np.float64)
            if a.shape != shape:
                raise WeightsError(f"{source}, layer {i} {name}: shape {a.shape}; the spec {spec.name!r} needs {shape} (train and export with the same topology)")
            kw[name], sat = quantize(a, fmt, f"{source}, layer {i} {name}")
            report.append(ArrayReport(i, name, fmt.describe(), int(a.size), sat, float(np.abs(a).max(initial=0.0)), (fmt.to_real(fmt.min_int), fmt.to_real(fmt.max_int))))
        layers.append(LayerParams(**kw))
    params = Params(layers)
    check_params(spec, params, source)
    return params, report


def describe_report(report: list[ArrayReport]) -> str:
    lines = ["quantized arrays (saturated = values outside the format's range, clipped to its ends):"]
    for r in report:
        lo, hi = r.range
        pct = 100 * r.saturated / r.count if r.count else 0.0
        lines.append(f"  layer {r.layer} {r.name:8s} {r.format:7s} range [{lo:g}, {hi:g}]  {r.count:8d} values, max |w| {r.max_abs:.4g}, saturated {r.saturated} ({pct:.2f}%)")
    return "\n".join(lines)


__all__ = ["ArrayReport", "describe_report", "quantize", "to_params"]
