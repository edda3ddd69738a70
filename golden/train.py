"""Online learning over a dataset, as the chip would do it: epochs, evaluation, checkpoints.

Every training sample runs through :meth:`Golden.run_sample` with learning on, in an order
drawn from the ``shuffle`` LFSR (a stable argsort of one draw per sample, each epoch). After
each epoch the train and test sets are evaluated with learning off (the batched path) and the
accuracy of every layer's local classifier is recorded.

An output folder holds ``weights.npz`` (the learned parameters), ``metrics.json`` /
``metrics.csv`` (one row per epoch), ``spec.toml``, ``checkpoint.npz`` (everything needed to
resume: parameters, LFSR states, position in the epoch) and, with matplotlib installed,
``learning_curves.png``. A run resumed from its checkpoint gives bit for bit the same result
as a run that was never interrupted.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from localsnn.errors import LocalsnnError
from localsnn.golden.lfsr import LFSR
from localsnn.golden.model import COUNTERS, Golden
from localsnn.golden.params import Params, check_params, params_from_arrays, read_npz, save_params
from localsnn.util import accuracy, accuracy_columns, atomic_write, plot_history, write_metrics
from localsnn.spec import NetworkSpec, dumps


@dataclass
class EpochMetrics:
    """Accuracies are per layer (index 0 = first hidden layer's classifier); the network's
    decision is the last entry."""

    epoch: int
    online_train_acc: list[float]
    train_acc: list[float] | None
    test_acc: list[float]
    seconds: float
    samples_per_s: float
    counters: list[dict[str, int]] = field(default_factory=list)


def epoch_order(lfsr: LFSR, n: int) -> np.ndarray:
    """A permutation of ``range(n)``: stable argsort of ``n`` draws."""
    return np.argsort(lfsr.draws(n), kind="stable")


class Checkpoint:
    """The whole state of a training run, saved atomically to ``checkpoint.npz``."""

    NAME = "checkpoint.npz"

    @staticmethod
    def save(folder: Path, golden: Golden, *, epoch: int, position: int, shuffle_state: int, online_correct: list[int], history: list[EpochMetrics], counters: list[dict]) -> None:
        arrays = {f"layer{i}.{k}": v for i, lp in enumerate(golden.params.layers) for k, v in lp.arrays().items()}
        meta = {
            "spec": dumps(golden.spec),
            "epoch": epoch,
            "position": position,
            "shuffle_state": shuffle_state,
            "streams": golden.stream_states(),
            "online_correct": online_correct,
            "history": [asdict(h) for h in history],
            "counters": counters,
            "golden_counters": golden.counters,
        }
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write(folder / Checkpoint.NAME, buf.getvalue())

    @staticmethod
    def load(folder: Path, spec: NetworkSpec) -> tuple[Params, dict]:
        path = folder / Checkpoint.NAME
        if not path.is_file():
            raise LocalsnnError(f"nothing to resume: {path} does not exist (start without --resume)")
        arrays = read_npz(path, "checkpoint", "it cannot be resumed: start again with --overwrite")
        try:
            meta = json.loads(bytes(arrays["meta.json"]).decode())
            meta["spec"], meta["epoch"], meta["position"]
        except (KeyError, TypeError, ValueError) as err:
            raise LocalsnnError(f"{path} is not a checkpoint of 'golden train' or is damaged ({type(err).__name__}: {err}); start again with --overwrite") from None
        layers = params_from_arrays(arrays, path).layers  # a WeightsError names what is wrong
        if meta["spec"] != dumps(spec):
            raise LocalsnnError(f"{path} was written for a different spec; resume with the same --config, or use another --out folder")
        params = Params(layers)
        check_params(spec, params, str(path))
        return params, meta


#: the weights of the epoch with the best test accuracy of the network's decision (the first
#: of equals); ``weights.npz`` holds the last epoch's, from which a run continues
BEST_WEIGHTS = "weights-best.npz"

#: the files of a run in its output folder, its checkpoint first (``localsnn.util.output_folder``)
RUN_FILES = (Checkpoint.NAME, "weights.npz", BEST_WEIGHTS, "metrics.json")


def _write_metrics(folder: Path, history: list[EpochMetrics], layers: int) -> None:
    columns = [("epoch", lambda h: h.epoch), ("seconds", lambda h: f"{h.seconds:.3f}"), ("samples_per_s", lambda h: f"{h.samples_per_s:.1f}")]
    for kind in ("online_train", "train", "test"):
        columns += accuracy_columns(kind, lambda h, kind=kind: getattr(h, f"{kind}_acc"), layers)
    write_metrics(folder, history, columns)


def train(
    spec: NetworkSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    epochs: int,
    out: str | Path | None = None,
    resume: bool = False,
    params: Params | None = None,
    eval_train: bool = True,
    checkpoint_every: int = 5000,
    progress: bool = True,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> tuple[Golden, list[EpochMetrics]]:
    """Learn online for ``epochs`` epochs; ``x_*`` are quantized inputs (see Golden.quantize).

    With ``out``, results and checkpoints are written there; ``resume`` continues from the
    checkpoint in ``out``.
    """
    from tqdm import tqdm

    if epochs < 1:
        raise LocalsnnError(f"epochs must be at least 1, not {epochs}")
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    golden = Golden(spec, params)
    shuffle = LFSR.stream(spec.lfsr.width, spec.lfsr.seed, "shuffle")
    start_epoch, position, history = 0, 0, []
    online_correct = [0] * len(spec.layers)
    run_counters = [dict.fromkeys(COUNTERS, 0) for _ in spec.layers]
    if resume:
        if folder is None:
            raise LocalsnnError("resume needs an output folder")
        loaded, meta = Checkpoint.load(folder, spec)
        golden = Golden(spec, loaded)
        golden.set_stream_states(meta["streams"])
        golden.counters = meta["golden_counters"]
        shuffle.state = meta["shuffle_state"]
        start_epoch, position = meta["epoch"], meta["position"]
        online_correct = meta["online_correct"]
        run_counters = meta["counters"]
        history = [EpochMetrics(**h) for h in meta["history"]]
    if folder is not None:
        if not resume:  # starting over: an earlier run's files are not this run's
            for name in RUN_FILES:
                (folder / name).unlink(missing_ok=True)
        (folder / "spec.toml").write_text(dumps(spec), encoding="utf-8")
    n = len(x_train)
    for epoch in range(start_epoch, epochs):
        epoch_state = shuffle.state
        order = epoch_order(shuffle, n)
        t0 = time.perf_counter()
        learned = 0
        bar = tqdm(total=n, initial=position, desc=f"epoch {epoch + 1}/{epochs}", unit="sample", disable=None if progress else True, leave=False)
        while position < n:
            i = order[position]
            rec = golden.run_sample(x_train[i], int(y_train[i]), record=False)
            for k, layer in enumerate(rec.layers):
                online_correct[k] += int(layer.decision == y_train[i])
            for acc, c in zip(run_counters, rec.counters):
                for key in acc:
                    acc[key] += int(c[key])
            position += 1
            learned += 1
            bar.update(1)
            if position % 200 == 0:
                bar.set_postfix(online_acc=f"{online_correct[-1] / position:.3f}")
            if folder is not None and position % checkpoint_every == 0 and position < n:
                Checkpoint.save(folder, golden, epoch=epoch, position=position, shuffle_state=epoch_state, online_correct=online_correct, history=history, counters=run_counters)
        bar.close()
        seconds = time.perf_counter() - t0
        test_acc = accuracy(golden.infer(x_test), y_test)
        train_acc = accuracy(golden.infer(x_train), y_train) if eval_train else None
        m = EpochMetrics(
            epoch=epoch + 1,
            online_train_acc=[c / n for c in online_correct],
            train_acc=train_acc,
            test_acc=test_acc,
            seconds=seconds,
            samples_per_s=learned / seconds if seconds > 0 else 0.0,
            counters=run_counters,
        )
        history.append(m)
        position, online_correct = 0, [0] * len(spec.layers)
        run_counters = [dict.fromkeys(COUNTERS, 0) for _ in spec.layers]
        if folder is not None:
            save_params(golden.params, folder / "weights.npz", spec)  # the last epoch's
            if m.test_acc[-1] > max((h.test_acc[-1] for h in history[:-1]), default=-1.0):
                save_params(golden.params, folder / BEST_WEIGHTS, spec)  # the best epoch's so far
            _write_metrics(folder, history, len(spec.layers))
            Checkpoint.save(folder, golden, epoch=epoch + 1, position=0, shuffle_state=shuffle.state, online_correct=online_correct, history=history, counters=run_counters)
        if on_epoch is not None:
            on_epoch(m)
    if folder is not None and history:
        plot_history(folder, history, spec.name)
    return golden, history
