"""The float training loop: epochs of minibatches, per-layer accuracies, checkpoints, resume.

:func:`train` builds a learner (``train/registry.py``) from a spec (or an architecture string
for convolutional nets), an optimizer (Adam or SGD) and a step schedule (the learning rate is
multiplied by ``lr_gamma`` every ``lr_step`` epochs; Ma et al. Table IV: Adam, 5e-4, divided
by 5 every 15 epochs, batch 100), and runs ``epochs`` epochs. The learner learns as its rule
says (``Learner.train_step``); after each epoch the train and test sets are evaluated with
learning off and the accuracy of every layer's local classifier is recorded.

Reproducible: every random choice of the loop comes from a generator seeded from ``seed``,
the epoch and a purpose (the order of the samples of epoch ``e``, the rate-code spikes of epoch
``e``, the rate-code spikes of every evaluation), so the same seed gives the same result on the
CPU, and a run resumed after epoch ``e`` is bit for bit the one that was never interrupted.

An output folder holds ``checkpoint.pt`` (written atomically after every epoch: model,
optimizer, schedule, torch RNG states, history, the configuration and the spec),
``metrics.json`` / ``metrics.csv`` (one row per epoch), ``spec.toml`` (the spec as trained,
overrides applied), ``config.json``, and at the end ``confusion.json`` and the plots
``learning_curves.png``, ``confusion.png``, ``raster.png``.

Observers (:func:`add_observer`) follow a run from outside without changing it: a tool that
schedules runs within a time budget and records memory (``tools/train_suite.py``) is told when
the epochs start, when each evaluation begins and ends, and after each checkpoint, where it may
ask the run to stop (:class:`StopRequested`: ``localsnn train`` then exits as interrupted,
resumable with ``--resume``).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from localsnn.util import accuracy, accuracy_columns, atomic_write, confusion, plot_history, pyplot, save_figure
from localsnn.util import write_metrics as write_metrics_files
from localsnn.train.api import UPDATES, Learner, RuleOptions
from localsnn.train.encode import Encoder, quantize

from localsnn import spec as specmod
from localsnn.errors import LocalsnnError
from localsnn.spec import NetworkSpec

OPTIMIZERS = ("adam", "sgd")
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
#: evaluation batches are at least this large (learning off: no per-sample state to keep)
EVAL_BATCH = 500


# --------------------------------------------------------------------------------------------
# observers
# --------------------------------------------------------------------------------------------


class StopRequested(KeyboardInterrupt):
    """An observer asked the run to stop after a checkpoint (handled as an interruption)."""


_observers: list = []


def add_observer(observer) -> Callable[[], None]:
    """Tell ``observer`` about every run of this process until the returned function removes it.

    It may define any of: ``on_train_start()`` (the learner is built and restored, the epochs
    begin), ``on_evaluate(begin)`` (an evaluation with learning off begins, ``begin=True``, or
    ends), ``on_checkpoint(epoch, epochs) -> bool`` (the checkpoint after epoch ``epoch`` of
    ``epochs`` is written; True stops the run there).
    """
    _observers.append(observer)
    return lambda: _observers.remove(observer)


def _notify(event: str, *args) -> bool:
    """Call ``event`` on every observer that has it; True when any returned True."""
    answers = [getattr(obs, event)(*args) for obs in list(_observers) if hasattr(obs, event)]
    return any(bool(a) for a in answers)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, except the spec (kept beside it) and ``epochs``.

    ``arch``: an architecture string for a convolutional net (``12c5-p2-64c5-p2-10``, see
    ``train/lif.py``), else the spec's fully connected layers are the net. ``limit``: use the
    first ``limit`` training samples only. ``input_shape``: one sample's shape as the learner
    sees it (filled in by :func:`train`).
    """

    rule: str
    dataset: str
    batch: int = 100
    optimizer: str = "adam"
    lr: float = 5e-4
    lr_step: int = 15
    lr_gamma: float = 0.2
    seed: int = 0
    arch: str | None = None
    limit: int | None = None
    eval_train: bool = True
    options: RuleOptions = field(default_factory=RuleOptions)
    input_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("batch", "lr_step"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise LocalsnnError(f"--{name.replace('_', '-')} must be a positive integer, not {v!r}")
        if self.optimizer not in OPTIMIZERS:
            raise LocalsnnError(f"unknown optimizer {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise LocalsnnError(f"--lr must be a positive number, not {self.lr!r}")
        if not (self.lr_gamma > 0 and np.isfinite(self.lr_gamma)):
            raise LocalsnnError(f"--lr-gamma must be a positive number, not {self.lr_gamma!r}")
        if self.limit is not None and self.limit < 1:
            raise LocalsnnError(f"--limit must be at least 1, not {self.limit}")
        o = self.options
        if o.update not in UPDATES:
            raise LocalsnnError(f"unknown update mode {o.update!r}; allowed: {', '.join(UPDATES)}")
        if o.k < 1 or o.n < 1:
            raise LocalsnnError(f"--k and --n must be at least 1, not k = {o.k}, n = {o.n}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["options"]["decolle_reg"] = list(self.options.decolle_reg)
        d["input_shape"] = list(self.input_shape)
        return d

    @staticmethod
    def from_json(d: dict) -> TrainConfig:
        d = dict(d)
        opts = dict(d.pop("options"))
        opts["decolle_reg"] = tuple(opts["decolle_reg"])
        d["input_shape"] = tuple(d["input_shape"])
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(options=RuleOptions(**opts), **{k: v for k, v in d.items() if k in names})


def override_spec(spec: NetworkSpec, *, encoding: str | None = None, timesteps: int | None = None, tau: float | None = None) -> NetworkSpec:
    """``spec`` with another input code, number of time steps, or membrane time constant
    ``tau`` of every LIF neuron (hidden and classifier; Ma et al. use tau = 40 with the
    latency code). The result is validated like any spec."""
    from localsnn.errors import SpecError

    try:
        if encoding is not None:
            spec = replace(spec, encoding=replace(spec.encoding, kind=encoding))
        if timesteps is not None:
            spec = replace(spec, timesteps=timesteps, learning=replace(spec.learning, accumulate=min(spec.learning.accumulate, timesteps)))
        if tau is not None:
            layers = []
            for layer in spec.layers:
                neuron = replace(layer.neuron, tau=tau) if layer.neuron.model == "lif" else layer.neuron
                clf = layer.classifier
                if clf.kind == "spiking":
                    clf = replace(clf, neuron=replace(clf.neuron, tau=tau))
                layers.append(replace(layer, neuron=neuron, classifier=clf))
            spec = replace(spec, layers=tuple(layers))
    except SpecError as err:
        raise LocalsnnError(f"the overrides make the spec invalid: {err}") from None
    return spec


def derived_seed(seed: int, purpose: str, epoch: int = 0) -> int:
    """A 63-bit seed for one purpose of one epoch, from the run's ``seed``."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, purpose: str, epoch: int, device: str | torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derived_seed(seed, purpose, epoch))
    return g


def eval_generator(seed: int, device) -> torch.Generator:
    """The generator of an evaluation (rate code): the same spikes for every evaluation."""
    return generator(seed, "eval", 0, device)


def check_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a clear error when CUDA is asked for and absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise LocalsnnError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise LocalsnnError(f"--device {device}: CUDA is not available ({why}; torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise LocalsnnError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    elif dev.type != "cpu":
        raise LocalsnnError(f"unsupported device {device!r}; use cpu, cuda or cuda:N")
    return dev


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def load_dataset(name: str, data_dir, spec: NetworkSpec | None, arch: str | None = None):
    """Load a dataset (``localsnn.data.load``) and check it against a spec's input and classes.
    An event dataset, or a spec with an ``events`` encoding, loads as the spec's input integers
    (:func:`localsnn.data.load_inputs`: binned into its steps; fully connected nets only)."""
    from localsnn import data

    if name in data.EVENT_DATASETS or (spec is not None and spec.encoding.per_step):
        if arch:
            raise LocalsnnError(f"--arch {arch} takes images; {name!r} with the spec's {spec.encoding.kind!r} encoding is a sequence of event bins per step: train a fully connected net from the spec (leave out --arch)")
        if spec is None:
            raise LocalsnnError(f"the event dataset {name!r} is binned by a spec's encoding; give one")
        return data.load_inputs(spec, name, data_dir)
    ds = data.load(name, data_dir)
    if spec is not None and not arch:
        if ds.n_inputs != spec.inputs:
            raise LocalsnnError(f"dataset {ds.name!r} has {ds.n_inputs} inputs per sample but the spec {spec.name!r} expects {spec.inputs}")
        if ds.classes != spec.classes:
            raise LocalsnnError(f"dataset {ds.name!r} has {ds.classes} classes but the spec {spec.name!r} has {spec.classes}")
    return ds


@dataclass
class Data:
    """A dataset as tensors on the training device: quantized pixels (int32) and labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    encoder: Encoder
    input_shape: tuple[int, ...]


def input_shape(ds, arch: str | None) -> tuple[int, ...]:
    """One sample's shape: ``(pixels,)`` for a fully connected net, ``(1, H, W)`` for a conv net."""
    return (1, *ds.image_shape) if arch else (ds.n_inputs,)


def prepare(ds, spec: NetworkSpec, cfg: TrainConfig, device) -> Data:
    """``ds`` a :class:`localsnn.data.Dataset` (raw pixels, quantized here) or the spec's input
    integers already (:class:`localsnn.data.Inputs`: an event dataset's bins) as tensors."""
    from localsnn.data import Inputs

    shape = input_shape(ds, cfg.arch)
    xtr, ytr = ds.x_train, ds.y_train
    if cfg.limit:
        xtr, ytr = xtr[: cfg.limit], ytr[: cfg.limit]

    def tensors(x, y):
        if isinstance(ds, Inputs):
            q = torch.from_numpy(np.asarray(x, dtype=np.int32))
        else:
            q = quantize(x, ds.max_value, spec.encoding).reshape(len(x), *shape)
        return q.to(device), torch.as_tensor(np.asarray(y, dtype=np.int64)).to(device)

    x_train, y_train = tensors(xtr, ytr)
    x_test, y_test = tensors(ds.x_test, ds.y_test)
    return Data(x_train, y_train, x_test, y_test, Encoder(spec.encoding, spec.timesteps), shape)


# --------------------------------------------------------------------------------------------
# learner, optimizer, evaluation
# --------------------------------------------------------------------------------------------


def make_learner(cfg: TrainConfig, spec: NetworkSpec, device) -> Learner:
    """Build the learner of ``cfg.rule`` (seeded: the same seed gives the same initial net)."""
    from localsnn.train import registry

    torch.manual_seed(derived_seed(cfg.seed, "init"))
    if cfg.arch:
        neuron = spec.layers[0].neuron
        learner = registry.build_arch(cfg.rule, cfg.arch, cfg.input_shape, spec.timesteps, cfg.options, neuron.tau, neuron.threshold)
    else:
        learner = registry.build(cfg.rule, spec, cfg.options)
    return learner.to(device)


def make_optimizer(cfg: TrainConfig, learner: Learner):
    params = [p for p in learner.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    return opt, sched


@torch.no_grad()
def evaluate(learner: Learner, x: torch.Tensor, encoder: Encoder, batch: int, device, gen: torch.Generator | None, *, progress: bool = False, desc: str = "eval") -> np.ndarray:
    """Every layer's classifier scores with learning off: ``(layers, N, classes)`` numpy."""
    from tqdm import tqdm

    was_training = learner.training
    learner.eval()
    n = len(x)
    bs = max(batch, EVAL_BATCH)
    out: list[list[np.ndarray]] = []
    _notify("on_evaluate", True)
    try:
        with tqdm(total=n, desc=desc, unit="sample", disable=None if progress else True, leave=False) as bar:
            for k in range(0, n, bs):
                scores = learner.evaluate(encoder(x[k : k + bs], gen))
                out.append([s.detach().float().cpu().numpy() for s in scores])
                bar.update(min(bs, n - k))
    finally:
        _notify("on_evaluate", False)
    learner.train(was_training)
    return np.stack([np.concatenate([b[i] for b in out]) for i in range(len(out[0]))])


# --------------------------------------------------------------------------------------------
# metrics and checkpoints
# --------------------------------------------------------------------------------------------


@dataclass
class EpochMetrics:
    """One epoch. Accuracies are per layer (index 0 = first hidden layer's classifier; the last
    is the network's decision); ``loss`` is the mean over the epoch's batches of the rule's
    loss, ``losses`` its per-layer parts; ``lr`` the learning rate the epoch used."""

    epoch: int
    loss: float
    losses: dict[str, float]
    train_acc: list[float] | None
    test_acc: list[float]
    lr: float
    seconds: float
    samples_per_s: float


def write_metrics(folder: Path, history: list[EpochMetrics]) -> None:
    layers = len(history[0].test_acc)
    loss_keys = sorted(history[0].losses)
    columns = [("epoch", lambda h: h.epoch), ("lr", lambda h: f"{h.lr:.6g}"), ("seconds", lambda h: f"{h.seconds:.3f}"), ("samples_per_s", lambda h: f"{h.samples_per_s:.1f}"), ("loss", lambda h: f"{h.loss:.6g}")]
    columns += [(k, lambda h, k=k: f"{h.losses.get(k, float('nan')):.6g}") for k in loss_keys]
    columns += accuracy_columns("train", lambda h: h.train_acc, layers) + accuracy_columns("test", lambda h: h.test_acc, layers)
    write_metrics_files(folder, history, columns)


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    config: TrainConfig
    spec: NetworkSpec
    spec_text: str
    epoch: int
    state: dict
    history: list[EpochMetrics]


def save_checkpoint(folder: Path, *, cfg: TrainConfig, spec: NetworkSpec, epoch: int, learner, optimizer, scheduler, history: list[EpochMetrics]) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(cfg.to_json()),
        "spec": specmod.dumps(spec),
        "epoch": epoch,
        "model": learner.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": json.dumps([asdict(h) for h in history]),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(folder / CHECKPOINT, buf.getvalue())


def load_checkpoint(path: str | Path, device="cpu") -> Checkpoint:
    """Read a checkpoint (a ``checkpoint.pt`` or the run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a localsnn training checkpoint")
        cfg = TrainConfig.from_json(json.loads(state["config"]))
        spec = specmod.loads(state["spec"], str(path))
        history = [EpochMetrics(**h) for h in json.loads(state["history"])]
    except FileNotFoundError:
        raise LocalsnnError(f"no checkpoint {path} (a run folder of 'localsnn train' holds {CHECKPOINT})") from None
    except LocalsnnError:
        raise
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        first = (str(err).strip().splitlines() or [""])[0][:200]  # torch's messages run to many lines
        raise LocalsnnError(f"{path} is not a readable localsnn training checkpoint ({type(err).__name__}: {first}); give a checkpoint.pt written by 'localsnn train', or its run folder") from None
    return Checkpoint(path, cfg, spec, state["spec"], int(state["epoch"]), state, history)


def restore_learner(ckpt: Checkpoint, device="cpu") -> Learner:
    """The learner of a checkpoint, with its trained weights, in evaluation mode."""
    learner = make_learner(ckpt.config, ckpt.spec, device)
    learner.load_state_dict(ckpt.state["model"])
    learner.eval()
    return learner


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------


def plot_confusion(folder: Path, cms: np.ndarray, title: str) -> Path | None:
    """One confusion matrix per layer (rows: true label), side by side."""
    plt = pyplot()
    if plt is None:
        return None
    n = len(cms)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False)
    for i, (ax, cm) in enumerate(zip(axes[0], cms)):
        ax.imshow(cm, cmap="Blues")
        acc = np.trace(cm) / max(cm.sum(), 1)
        ax.set_title(f"layer {i}: {100 * acc:.1f} %")
        ax.set_xlabel("decision")
        ax.set_ylabel("true label")
        k = cm.shape[0]
        if k <= 20:
            ax.set_xticks(range(k))
            ax.set_yticks(range(k))
            for r in range(k):
                for c in range(k):
                    if cm[r, c]:
                        ax.text(c, r, str(cm[r, c]), ha="center", va="center", fontsize=6, color="white" if cm[r, c] > cm.max() / 2 else "black")
    fig.suptitle(title)
    return save_figure(fig, folder / "confusion.png")


def plot_raster(folder: Path, rasters: list[tuple[str, np.ndarray]], title: str) -> Path | None:
    """Spike rasters ``(T, neurons)`` of one sample, one panel each (an input current of the
    direct code is drawn as its value)."""
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(len(rasters), 1, figsize=(7, 2.2 * len(rasters)), squeeze=False)
    for ax, (name, r) in zip(axes[:, 0], rasters):
        r = np.asarray(r, dtype=np.float64).reshape(r.shape[0], -1)
        binary = np.isin(r, (0.0, 1.0)).all()
        if binary:
            t, j = np.nonzero(r)
            ax.scatter(t, j, s=4, marker="|", color="black")
            ax.set_ylim(-0.5, r.shape[1] - 0.5)
        else:
            ax.imshow(r.T, aspect="auto", interpolation="nearest", cmap="Greys", origin="lower")
        ax.set_xlim(-0.5, r.shape[0] - 0.5)
        ax.set_ylabel(name)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(title)
    return save_figure(fig, folder / "raster.png")


def sample_rasters(learner, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """The encoded input of one sample ``x`` ``[T, 1, ...]`` and, when the learner can record
    its states (an optional ``record(x)`` giving per hidden layer a dict whose ``S``/``s``/``o``
    entry holds the spikes ``[T, 1, ...]``; not part of the Learner interface), the spikes of
    every hidden layer."""
    out = [("input", x[:, 0].detach().cpu().numpy())]
    record = getattr(learner, "record", None)
    if callable(record):
        with torch.no_grad():
            for i, rec in enumerate(record(x)):
                key = next((k for k in ("S", "s", "o", "spikes") if isinstance(rec, dict) and k in rec), None)
                if key is not None:
                    out.append((f"layer {i}", rec[key][:, 0].detach().float().cpu().numpy()))
    return out


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


def _same_run(folder: Path, ckpt: Checkpoint, cfg: TrainConfig, spec_text: str) -> None:
    diffs = []
    if ckpt.spec_text != spec_text:
        diffs.append("the spec (--config, --encoding, --timesteps, --tau)")
    old, new = ckpt.config.to_json(), cfg.to_json()
    for k in new:
        if old.get(k) != new[k]:
            diffs.append(f"{k} ({old.get(k)!r} there, {new[k]!r} now)" if k != "options" else "rule options (" + ", ".join(f"{o}: {old[k].get(o)!r} there, {new[k][o]!r} now" for o in new[k] if old[k].get(o) != new[k][o]) + ")")
    if diffs:
        raise LocalsnnError(f"{folder / CHECKPOINT} belongs to another run; it differs in " + "; ".join(diffs) + ". Resume with the same options, or train into another -o folder")


def train(
    spec: NetworkSpec,
    cfg: TrainConfig,
    *,
    epochs: int,
    out: str | Path,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    data_dir=None,
    progress: bool = True,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_start: Callable[[Learner, list[EpochMetrics]], None] | None = None,
    ds=None,
) -> tuple[Learner, list[EpochMetrics]]:
    """Train for ``epochs`` epochs into the folder ``out`` (see the module docstring).

    ``resume``: continue from the checkpoint in ``out`` (the same spec and configuration;
    ``epochs`` may grow). Without it an existing checkpoint is an error unless ``overwrite``.
    ``ds``: an already loaded :class:`localsnn.data.Dataset` (else ``cfg.dataset`` is loaded).
    ``on_start(learner, history)`` is called once the learner is built (and restored: the
    history holds the finished epochs), ``on_epoch(metrics)`` after every epoch.
    """
    if epochs < 1:
        raise LocalsnnError(f"epochs must be at least 1, not {epochs}")
    dev = check_device(device)
    folder = Path(out)
    ckpt_path = folder / CHECKPOINT
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path, dev) if ckpt_path.exists() else None
        if ckpt is None:
            raise LocalsnnError(f"nothing to resume: {ckpt_path} does not exist (start without --resume)")
    elif ckpt_path.exists() and not overwrite:
        raise LocalsnnError(f"{folder} already holds a training checkpoint; continue it with --resume, start over with --overwrite, or train into another -o folder")
    if ds is None:
        ds = load_dataset(cfg.dataset, data_dir, spec, cfg.arch)
    elif not cfg.arch and (ds.n_inputs != spec.inputs or ds.classes != spec.classes):
        raise LocalsnnError(f"dataset {ds.name!r} ({ds.n_inputs} inputs, {ds.classes} classes) does not fit the spec {spec.name!r} ({spec.inputs} inputs, {spec.classes} classes)")
    cfg = replace(cfg, input_shape=input_shape(ds, cfg.arch))
    spec_text = specmod.dumps(spec)
    if ckpt is not None:
        _same_run(folder, ckpt, cfg, spec_text)
    data = prepare(ds, spec, cfg, dev)
    learner = make_learner(cfg, spec, dev)
    optimizer, scheduler = make_optimizer(cfg, learner)
    history: list[EpochMetrics] = []
    start = 0
    if ckpt is not None:
        learner.load_state_dict(ckpt.state["model"])
        optimizer.load_state_dict(ckpt.state["optimizer"])
        scheduler.load_state_dict(ckpt.state["scheduler"])
        torch.set_rng_state(ckpt.state["rng_cpu"].cpu())
        if ckpt.state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt.state["rng_cuda"]])
        history, start = ckpt.history, ckpt.epoch
    if on_start is not None:
        on_start(learner, history)
    folder.mkdir(parents=True, exist_ok=True)
    if ckpt is None:  # starting over (--overwrite): the earlier run's checkpoint is not this run's
        ckpt_path.unlink(missing_ok=True)
    (folder / "spec.toml").write_text(spec_text, encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(cfg.to_json(), indent=1), encoding="utf-8")
    try:
        _epochs(learner, optimizer, scheduler, data, cfg, spec, folder, history, start, epochs, dev, progress, on_epoch)
    except torch.OutOfMemoryError:
        raise LocalsnnError(f"out of memory on {dev} with batch {cfg.batch}: use a smaller --batch (the checkpoint of the last finished epoch is kept; continue with --resume)") from None
    if len(history[0].test_acc) != len(learner.layer_names()):  # pragma: no cover - a learner bug
        raise LocalsnnError(f"the learner names {len(learner.layer_names())} layers but evaluates {len(history[0].test_acc)}")
    finish(folder, learner, data, cfg, spec, history, dev)
    return learner, history


def _epochs(learner, optimizer, scheduler, data: Data, cfg: TrainConfig, spec: NetworkSpec, folder: Path, history: list[EpochMetrics], start: int, epochs: int, dev, progress: bool, on_epoch) -> None:
    """Epochs ``start .. epochs-1``: learn, evaluate, record, checkpoint (appends to ``history``)."""
    from tqdm import tqdm

    n = len(data.x_train)
    _notify("on_train_start")
    for epoch in range(start, epochs):
        learner.train()
        order = torch.randperm(n, generator=generator(cfg.seed, "shuffle", epoch, "cpu")).to(dev)
        enc_gen = generator(cfg.seed, "encode", epoch, dev)
        lr = optimizer.param_groups[0]["lr"]
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        with tqdm(total=n, desc=f"epoch {epoch + 1}/{epochs}", unit="sample", disable=None if progress else True, leave=False) as bar:
            for k in range(0, n, cfg.batch):
                idx = order[k : k + cfg.batch]
                x = data.encoder(data.x_train[idx], enc_gen)
                stats = learner.train_step(x, data.y_train[idx], optimizer)
                for key, v in stats.items():
                    sums[key] = sums.get(key, 0.0) + float(v) * len(idx)
                if not np.isfinite(float(stats.get("loss", 0.0))):
                    raise LocalsnnError(f"the loss became {float(stats['loss'])} in epoch {epoch + 1}: training diverged; lower --lr" + (f" (the checkpoint after epoch {epoch} is kept)" if epoch else ""))
                bar.update(len(idx))
                bar.set_postfix(loss=f"{sums.get('loss', 0.0) / (k + len(idx)):.4f}", refresh=False)
        seconds = time.perf_counter() - t0
        scheduler.step()
        test_acc = accuracy(evaluate(learner, data.x_test, data.encoder, cfg.batch, dev, eval_generator(cfg.seed, dev), progress=progress, desc="test"), data.y_test.cpu().numpy())
        train_acc = None
        if cfg.eval_train:
            train_acc = accuracy(evaluate(learner, data.x_train, data.encoder, cfg.batch, dev, eval_generator(cfg.seed, dev), progress=progress, desc="train eval"), data.y_train.cpu().numpy())
        m = EpochMetrics(
            epoch=epoch + 1,
            loss=sums.pop("loss", float("nan")) / n,
            losses={key: v / n for key, v in sorted(sums.items())},
            train_acc=train_acc,
            test_acc=test_acc,
            lr=lr,
            seconds=seconds,
            samples_per_s=n / seconds if seconds > 0 else 0.0,
        )
        history.append(m)
        write_metrics(folder, history)
        save_checkpoint(folder, cfg=cfg, spec=spec, epoch=epoch + 1, learner=learner, optimizer=optimizer, scheduler=scheduler, history=history)
        if on_epoch is not None:
            on_epoch(m)
        if _notify("on_checkpoint", epoch + 1, epochs):
            raise StopRequested


def finish(folder: Path, learner, data: Data, cfg: TrainConfig, spec: NetworkSpec, history: list[EpochMetrics], dev) -> None:
    """The end-of-run files: confusion matrices (JSON and plot), learning curves, a raster."""
    counts = evaluate(learner, data.x_test, data.encoder, cfg.batch, dev, eval_generator(cfg.seed, dev))
    labels = data.y_test.cpu().numpy()
    classes = counts.shape[-1]
    cms = confusion(counts, labels, classes)
    atomic_write(folder / "confusion.json", json.dumps({"rows": "true label", "columns": "decision", "layers": cms.tolist()}).encode())
    title = f"{spec.name if not cfg.arch else cfg.arch}, {cfg.rule}, {cfg.dataset}"
    plot_history(folder, history, title)
    plot_confusion(folder, cms, f"{title}: test set after epoch {history[-1].epoch}")
    x = data.encoder(data.x_test[:1], eval_generator(cfg.seed, dev))
    learner.eval()
    plot_raster(folder, sample_rasters(learner, x), f"{title}: test sample 0 (label {int(labels[0])}), {spec.encoding.kind} code")
