"""Synthetic event datasets in the real datasets' own file formats, for trying the event path
without the real files (which cannot be downloaded here): a tool beside the package.

    python tools/synthetic_events.py nmnist DATA_DIR [--per-class N] [--seed S]
    python tools/synthetic_events.py shd DATA_DIR [--per-class N] [--seed S]

``nmnist``: ``DATA_DIR/nmnist/Train|Test/<digit>/<nnnnn>.bin`` in N-MNIST's 5-byte format,
recordings made from scikit-learn's 8x8 digits (its train and test split, ``localsnn.data``)
the way N-MNIST was made from MNIST (Orchard et al. 2015): the image, scaled 3x to 24x24 and
centred on the 34x34 sensor, is seen during three saccades of 100 ms each, moving one pixel
right, then down-left, then up; a pixel that brightens as the image moves fires ON events,
one that darkens OFF events, in number proportional to the change, at times spread over the
saccade. Not N-MNIST (its digits are MNIST's, 28x28): a stand-in with its format, its sensor
and its time scale, learnable the same way.

``shd``: ``DATA_DIR/shd/shd_train.h5`` and ``shd_test.h5`` in SHD's HDF5 layout (times in
seconds as float16, units 0..699, labels 0..19): class ``c`` is a chirp, a band of 40 units
whose centre moves from unit ``30 c + 20`` over the recording's first 0.8 s, by
``(-1)**c * (2 + (c mod 4))`` units per 100 ms, plus background spikes everywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from localsnn import data
from localsnn import events as E

#: the three saccades (dx, dy) of a recording, each SACCADE_US long
SACCADES = ((1, 0), (-1, 1), (0, -1))
SACCADE_US = 100_000
#: events per unit of brightness change (pixels are 0..16)
EVENTS_PER_LEVEL = 0.25


def _image34(img8: np.ndarray) -> np.ndarray:
    """An 8x8 digit (0..16) scaled 3x and centred on the 34x34 sensor."""
    big = np.kron(img8.reshape(8, 8), np.ones((3, 3), dtype=np.int64))
    out = np.zeros((34, 34), dtype=np.int64)
    out[5:29, 5:29] = big
    return out


def nmnist_recording(img8: np.ndarray, rng: np.random.Generator) -> E.Events:
    """One synthetic N-MNIST recording of an 8x8 digit (module docstring)."""
    img = _image34(img8)
    ts, xs, ys, ps = [], [], [], []
    pos = np.array([0, 0])
    for k, (dx, dy) in enumerate(SACCADES):
        before = np.roll(img, tuple(pos[::-1]), axis=(0, 1))
        pos = pos + (dx, dy)
        after = np.roll(img, tuple(pos[::-1]), axis=(0, 1))
        change = after - before
        counts = rng.poisson(np.abs(change) * EVENTS_PER_LEVEL)
        yy, xx = np.nonzero(counts)
        n = counts[yy, xx]
        ys.append(np.repeat(yy, n))
        xs.append(np.repeat(xx, n))
        ps.append(np.repeat((change[yy, xx] > 0).astype(np.int64), n))
        ts.append(k * SACCADE_US + rng.integers(0, SACCADE_US, int(n.sum())))
    t, x, y, p = (np.concatenate(a) for a in (ts, xs, ys, ps))
    order = np.argsort(t, kind="stable")
    return E.Events(t[order], x[order], y[order], p[order])


def write_nmnist(root: Path, per_class: int, seed: int = 0) -> dict[str, int]:
    """``root/nmnist/``: ``per_class`` train and ``max(1, per_class // 4)`` test recordings per
    digit; returns the number of files per split."""
    rng = np.random.default_rng(seed)
    ds = data.load("digits")
    written = {}
    for split, x, y, n in (("Train", ds.x_train, ds.y_train, per_class), ("Test", ds.x_test, ds.y_test, max(1, per_class // 4))):
        count = 0
        for digit in range(10):
            folder = root / "nmnist" / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(np.flatnonzero(y == digit)[:n]):
                E.write_nmnist_file(folder / f"{i:05d}.bin", nmnist_recording(x[i], rng))
                count += 1
        written[split] = count
    return written


def shd_recording(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic SHD recording of class ``label``: (times in seconds, units)."""
    units = E.SENSORS["shd"][0]
    speed = (-1) ** label * (2 + label % 4)
    t = np.sort(rng.uniform(0.0, 0.8, 600))
    centre = 30 * label + 20 + speed * t / 0.1
    u = np.clip(np.round(centre + rng.normal(0, 8, t.size)), 0, units - 1)
    tb = rng.uniform(0.0, 1.0, 200)
    ub = rng.integers(0, units, tb.size)
    tt, uu = np.concatenate([t, tb]), np.concatenate([u, ub]).astype(np.uint16)
    order = np.argsort(tt, kind="stable")
    return tt[order].astype(np.float16), uu[order]


def write_shd(root: Path, per_class: int, seed: int = 0) -> dict[str, int]:
    """``root/shd/shd_train.h5`` (``per_class`` per class) and ``shd_test.h5`` (a quarter)."""
    import h5py

    rng = np.random.default_rng(seed)
    (root / "shd").mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", per_class), ("test", max(1, per_class // 4))):
        labels = np.repeat(np.arange(E.CLASSES["shd"]), n)
        recs = [shd_recording(int(c), rng) for c in labels]
        with h5py.File(root / "shd" / f"shd_{split}.h5", "w") as f:
            f.create_dataset("spikes/times", data=np.array([r[0] for r in recs] + [None], dtype=object)[:-1], dtype=h5py.vlen_dtype(np.float16))
            f.create_dataset("spikes/units", data=np.array([r[1] for r in recs] + [None], dtype=object)[:-1], dtype=h5py.vlen_dtype(np.uint16))
            f.create_dataset("labels", data=labels.astype(np.uint16))
        written[split] = len(labels)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="synthetic_events.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", choices=("nmnist", "shd"))
    ap.add_argument("data_dir", type=Path, help="the folder --data-dir names (the files go into DATA_DIR/<dataset>/)")
    ap.add_argument("--per-class", type=int, default=20, help="training recordings per class (test: a quarter; default 20)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.per_class < 1:
        ap.error(f"--per-class {args.per_class}: at least 1")
    written = (write_nmnist if args.dataset == "nmnist" else write_shd)(args.data_dir, args.per_class, args.seed)
    print(f"{args.dataset}: " + ", ".join(f"{n} {split.lower()} recordings" for split, n in written.items()) + f" in {args.data_dir / args.dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
