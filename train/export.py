"""From a float checkpoint to the weights the golden model (and the chip) loads.

:func:`quantize` turns float arrays into integers of a :class:`~localsnn.spec.FixedFormat`:
``round(w * 2**frac)`` with the format's rounding for a single shift (``floor``: toward minus
infinity; ``nearest``: half up; ``stochastic``: half up too: an export is made once and should
be the closest value, not a random one), then **saturated** into the format's range, whatever
its ``overflow`` says (a wrapped weight would change sign), and every saturated value counted.

:func:`to_params` maps a learner's ``float_weights()`` (per layer ``w`` (fan_in, size),
``clf_w`` (size, classes), for DECOLLE also ``bias`` and ``feedback``) onto golden's
:class:`~localsnn.golden.params.Params`, in the formats the spec gives each array.
:func:`export` does the whole job: load the checkpoint, quantize, write ``weights.npz`` (golden's
:func:`~localsnn.golden.params.save_params`) and ``spec.toml``, and measure the float accuracy of
the checkpoint beside the fixed-point accuracy of the exported net in golden, on the same test
set. ``localsnn golden train --config DIR/spec.toml --weights DIR/weights.npz`` then continues
learning on chip from there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from localsnn.golden.params import (
    LayerParams,
    Params,
    _expected,
    check_params,
    save_params,
)

from localsnn.errors import LocalsnnError, WeightsError
from localsnn.spec import FixedFormat, NetworkSpec, dumps


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


@dataclass
class ExportResult:
    out: Path
    spec: NetworkSpec
    params: Params
    report: list[ArrayReport]
    dataset: str
    samples: int
    float_acc: list[float]
    golden_acc: list[float]
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"test accuracy on {self.dataset} ({self.samples} samples), learning off:", "  layer   float (checkpoint)   golden fixed point (exported)   difference"]
        for i, (f, g) in enumerate(zip(self.float_acc, self.golden_acc)):
            lines.append(f"  {i:5d}   {100 * f:16.2f}%   {100 * g:28.2f}%   {100 * (g - f):+9.2f}")
        return "\n".join(lines)


def export(checkpoint: str | Path, out: str | Path, *, spec: NetworkSpec | None = None, dataset: str | None = None, data_dir=None, device: str = "cpu", progress: bool = True, evaluate: bool = True) -> ExportResult:
    """Quantize a training checkpoint for golden; see the module docstring.

    ``spec``: the formats to quantize into (default: the spec the checkpoint was trained with);
    it must have the trained net's topology. ``dataset``: where to measure the accuracies
    (default: the one the checkpoint was trained on).
    """
    from localsnn.golden.model import Golden
    from localsnn.util import accuracy
    from localsnn.train import loop

    ckpt = loop.load_checkpoint(checkpoint, device)
    cfg = ckpt.config
    if cfg.arch:
        raise LocalsnnError(f"{checkpoint} holds a convolutional net (--arch {cfg.arch}); the golden model and the chip have fully connected layers only, so only nets built from a spec export")
    spec = spec if spec is not None else ckpt.spec
    trained = ckpt.spec
    if (spec.inputs, [l.size for l in spec.layers], spec.classes) != (trained.inputs, [l.size for l in trained.layers], trained.classes):
        raise LocalsnnError(
            f"the spec {spec.name!r} is {spec.inputs}-{'-'.join(str(l.size) for l in spec.layers)}-{spec.classes} but {checkpoint} was trained as "
            f"{trained.inputs}-{'-'.join(str(l.size) for l in trained.layers)}-{trained.classes}; export into a spec of the same topology"
        )
    learner = loop.restore_learner(ckpt, device)
    params, report = to_params(spec, [{k: _numpy(v) for k, v in layer.items()} for layer in learner.float_weights()], f"{checkpoint}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    save_params(params, folder / "weights.npz", spec)
    (folder / "spec.toml").write_text(dumps(spec), encoding="utf-8")
    result = ExportResult(folder, spec, params, report, dataset or cfg.dataset, 0, [], [])
    if evaluate:
        ds = loop.load_dataset(dataset or cfg.dataset, data_dir, spec)
        data = loop.prepare(ds, ckpt.spec, cfg, device)
        t0 = time.perf_counter()
        counts = loop.evaluate(learner, data.x_test, data.encoder, cfg.batch, device, loop.eval_generator(cfg.seed, device), progress=progress, desc="float eval")
        result.seconds["float"] = time.perf_counter() - t0
        result.float_acc = accuracy(counts, ds.y_test)
        golden = Golden(spec, params.copy())
        t0 = time.perf_counter()
        xte = golden.quantize(ds.x_test, ds.max_value)
        result.golden_acc = accuracy(golden.infer(xte), ds.y_test)
        result.seconds["golden"] = time.perf_counter() - t0
        result.samples = len(ds.y_test)
        result.dataset = ds.name
    summary = {
        "checkpoint": str(checkpoint),
        "epoch": ckpt.epoch,
        "rule": cfg.rule,
        "spec": spec.name,
        "dataset": result.dataset,
        "test_samples": result.samples,
        "float_test_acc": result.float_acc,
        "golden_test_acc": result.golden_acc,
        "arrays": [r.__dict__ for r in report],
    }
    (folder / "export.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return result


def _numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):
        return v.detach().to("cpu", dtype=__import__("torch").float64).numpy()
    return np.asarray(v, dtype=np.float64)
