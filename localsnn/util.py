"""Helpers shared by the golden trainer (``golden/train.py``), the float trainer (``train/``) and
the CLI: accuracies from decision counts, atomic file writes, a run's metrics files, output
folders checked before work starts, matplotlib figures."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from localsnn.errors import LocalsnnError


def accuracy(counts: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per-layer accuracy from ``(layers, B, classes)`` decision counts (argmax, lowest index
    wins a tie)."""
    return [float(np.mean(np.argmax(c, axis=-1) == labels)) for c in counts]


def confusion(counts: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """``(layers, classes, classes)`` confusion matrices, rows = true label."""
    out = np.zeros((len(counts), classes, classes), dtype=np.int64)
    for i, c in enumerate(counts):
        np.add.at(out[i], (labels.astype(np.int64), np.argmax(c, axis=-1)), 1)
    return out


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename: a reader
    (or a run stopped half-way) sees the old file or the new one, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_metrics(folder: Path, history: Sequence, columns: Sequence[tuple[str, Callable[[object], object]]]) -> None:
    """A run's metrics, both files written atomically: ``metrics.json`` (every field of every
    epoch's record, a dataclass) and ``metrics.csv`` (one row per epoch; ``columns``: a header
    and the function that gives a record's value in that column)."""
    atomic_write(folder / "metrics.json", json.dumps([dataclasses.asdict(h) for h in history], indent=1).encode())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([name for name, _ in columns])
    for h in history:
        w.writerow([value(h) for _, value in columns])
    atomic_write(folder / "metrics.csv", buf.getvalue().encode())


def accuracy_columns(kind: str, get: Callable[[object], Sequence[float] | None], layers: int) -> list[tuple[str, Callable[[object], object]]]:
    """``metrics.csv`` columns ``<kind>_acc_layer<i>``: ``get(record)[i]`` to 4 decimals, empty
    where the record has none (``get`` gives None)."""
    def column(i: int) -> Callable[[object], object]:
        return lambda h: "" if get(h) is None else f"{get(h)[i]:.4f}"

    return [(f"{kind}_acc_layer{i}", column(i)) for i in range(layers)]


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (110 dpi) and release it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_history(folder: Path, history, title: str) -> Path | None:
    """Learning curves of every layer's classifier (``history``: per epoch, ``epoch``,
    ``test_acc`` and ``train_acc`` lists by layer) into ``learning_curves.png``; None when
    matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h.epoch for h in history]
    for i in range(len(history[0].test_acc)):
        ax.plot(epochs, [100 * h.test_acc[i] for h in history], marker="o", label=f"layer {i} test")
        if history[0].train_acc is not None:
            ax.plot(epochs, [100 * h.train_acc[i] for h in history], linestyle="--", label=f"layer {i} train")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, folder / "learning_curves.png")


__all__ = ["accuracy", "atomic_write", "confusion", "plot_history", "pyplot", "save_figure"]


def output_folder(path: str | Path, *, resume: bool = False, overwrite: bool = False, runs: tuple[str, ...] = ()) -> Path:
    """Check a command's output folder before any work starts, and return it (not created: the
    command creates it when it first writes).

    Refused, with a message that says what to do: a path that is a file or lies under one; a
    folder where no file can be created; ``resume`` where the folder or its checkpoint
    (``runs[0]``) is missing; a folder that holds any of ``runs`` (the files of an earlier run:
    its checkpoint, weights, metrics) without ``resume`` or ``overwrite``.
    """
    folder = Path(path)
    for above in [folder, *folder.parents]:
        if above.exists():
            if not above.is_dir():
                where = "is a file" if above == folder else f"lies under {str(above)!r}, which is a file"
                raise LocalsnnError(f"output folder {str(folder)!r} {where}; give a folder")
            if not os.access(above, os.W_OK | os.X_OK):
                raise LocalsnnError(f"output folder {str(folder)!r}: {str(above)!r} is not writable; give a folder you can write to")
            break
    if resume:
        if not runs or not (folder / runs[0]).is_file():
            raise LocalsnnError(f"nothing to resume: {folder / runs[0] if runs else folder} does not exist (start without --resume)")
    elif not overwrite:
        found = [name for name in runs if (folder / name).exists()]
        if found:
            raise LocalsnnError(f"{folder} already holds a run ({', '.join(found)}); continue it with --resume, start over with --overwrite, or use another output folder")
    return folder
