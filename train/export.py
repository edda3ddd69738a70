"""From a float checkpoint to the weights the golden model (and the chip) loads.

The quantization (:func:`quantize`, :func:`to_params`: float arrays into the spec's formats,
saturation counted) is golden's (:mod:`localsnn.golden.quantize`), shared with ``localsnn nir
import``; it maps a learner's ``float_weights()``. :func:`export` does the whole job: load the checkpoint, quantize, write ``weights.npz`` (golden's
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
from localsnn.golden.params import Params, save_params
from localsnn.golden.quantize import ArrayReport, describe_report, quantize, to_params

from localsnn.errors import LocalsnnError
from localsnn.spec import NetworkSpec, dumps


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
        xte = ds.x_test if ds.max_value is None else golden.quantize(ds.x_test, ds.max_value)
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
