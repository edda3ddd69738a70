"""Neuromorphic event datasets from their own files, and events binned into time steps
(docs/datasets.md, "Event datasets").

    ev = read_nmnist_file("Train/3/00012.bin")                      # Events: t (us), x, y, p
    for ev, label in samples("nmnist", data_dir, "train"): ...
    x = bin_events(ev, "nmnist", timesteps=10, window_us=300_000)   # [T, channels] counts

Nothing is downloaded (the archives are not on the package registries): the files go into
``DATA_DIR/<name>/`` as the publishers ship them, extracted (:data:`LAYOUT`). Where the archive
itself is there instead, it is checked against the MD5 digest its publisher (and tonic) gives
(:data:`ARCHIVES`; no SHA-256 is published for these) before it is extracted.

**Formats.** N-MNIST (Orchard et al. 2015): one ``.bin`` file per sample in ``Train|Test/<digit>/``,
40 bits per event, big-endian: ``x`` (8 bits), ``y`` (8), polarity (1), timestamp in
microseconds (23); an event with ``y = 240`` is no event but a timestamp overflow, which adds
``2**13`` to every later timestamp (the rule of the dataset's reference reader). SHD (Cramer et
al. 2020): ``shd_train.h5`` / ``shd_test.h5``, ``spikes/times`` (seconds) and ``spikes/units``
(0..699), one variable-length array per sample, ``labels`` (0..19). DVS Gesture (Amir et al.
2017) as tonic stores it: ``ibmGestureTrain|ibmGestureTest/user<NN>_<lighting>/<label>.npy``,
one ``(N, 4)`` array per sample, columns ``x, y, p, t`` with ``t`` in milliseconds.

**Binning** (:func:`bin_events`): events with ``0 <= t < window_us`` (the time since the start
of the recording, as the files hold it) fall into step ``floor(t * T / window_us)``; a channel
is ``(p, y // s, x // s)`` flattened row-major (``s``: ``downsample``), or ``(y // s, x // s)``
with the polarities merged, or one polarity only; SHD's channel is its unit. Each step's value
is the number of events in that bin (``count``) or whether there was one (``binary``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localsnn.errors import LocalsnnError
from localsnn.spec import EVENT_POLARITIES as POLARITIES

#: the datasets: sensor shape (height, width, polarities; SHD: units), classes
SENSORS = {"nmnist": (34, 34, 2), "dvsgesture": (128, 128, 2), "shd": (700,)}
CLASSES = {"nmnist": 10, "dvsgesture": 11, "shd": 20}
NAMES = tuple(SENSORS)
SPLITS = ("train", "test")
#: what goes where under DATA_DIR/<name>/, per split
LAYOUT = {
    "nmnist": {"train": "Train/<digit>/<nnnnn>.bin", "test": "Test/<digit>/<nnnnn>.bin"},
    "shd": {"train": "shd_train.h5", "test": "shd_test.h5"},
    "dvsgesture": {"train": "ibmGestureTrain/user<NN>_<lighting>/<label>.npy", "test": "ibmGestureTest/user<NN>_<lighting>/<label>.npy"},
}
#: the publishers' archives, their MD5 digests (as tonic checks them) and where they come from
ARCHIVES = {
    "nmnist": {"train": ("Train.zip", "20959b8e626244a1b502305a9e6e2031"), "test": ("Test.zip", "69ca8762b2fe404d9b9bad1103e97832"),
               "from": "https://www.garrickorchard.com/datasets/n-mnist (Mendeley Data 468j46mzdv)"},
    "shd": {"train": ("shd_train.h5.zip", "f3252aeb598ac776c1b526422d90eecb"), "test": ("shd_test.h5.zip", "1503a5064faa34311c398fb0a1ed0a6f"),
            "from": "https://zenkelab.org/datasets/"},
    "dvsgesture": {"train": ("ibmGestureTrain.tar.gz", "3a8f0d4120a166bac7591f77409cb105"), "test": ("ibmGestureTest.tar.gz", "56070e45dadaa85fff82e0fbfbc06de5"),
                   "from": "tonic's preprocessed copy, https://figshare.com/ndownloader/files/38022171 (train) and 38020584 (test)"},
}
MODES = ("count", "binary")
#: N-MNIST: the y address that marks a timestamp overflow, and what it adds to later timestamps
NMNIST_OVERFLOW_Y, NMNIST_OVERFLOW_US = 240, 2**13


class EventDataError(LocalsnnError, ValueError):
    """An event file or folder that is missing or not in its dataset's format (the message says
    which file, what was expected, and where the files go)."""


@dataclass
class Events:
    """One recording: timestamps in microseconds and addresses (SHD: ``x`` is the unit, ``y``
    and ``p`` are 0), one entry per event, in the file's order."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return len(self.t)


def _check_name(name: str) -> None:
    if name not in SENSORS:
        raise EventDataError(f"unknown event dataset {name!r}; allowed: {', '.join(NAMES)}")


# -- the file formats ------------------------------------------------------------------------------


def read_nmnist_file(path: str | Path) -> Events:
    """One N-MNIST ``.bin`` file (module docstring)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise EventDataError(f"{path}: {raw.size} bytes, not a whole number of 5-byte N-MNIST events")
    raw = raw.reshape(-1, 5).astype(np.int64)
    x, y = raw[:, 0], raw[:, 1]
    p = raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    overflow = y == NMNIST_OVERFLOW_Y
    t = t + NMNIST_OVERFLOW_US * np.cumsum(overflow)  # every event after an overflow marker
    keep = ~overflow
    return Events(t[keep], x[keep], y[keep], p[keep])


def write_nmnist_file(path: str | Path, ev: Events) -> None:
    """The inverse of :func:`read_nmnist_file` for timestamps below ``2**23`` (tests and tools)."""
    t = np.asarray(ev.t, dtype=np.int64)
    if t.size and (t.min() < 0 or t.max() >= 1 << 23):
        raise EventDataError("N-MNIST timestamps are 23-bit microseconds: 0 <= t < 2**23")
    rows = np.stack([np.asarray(ev.x) & 0xFF, np.asarray(ev.y) & 0xFF, (np.asarray(ev.p) & 1) << 7 | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF], axis=1)
    rows.astype(np.uint8).tofile(path)


def read_dvsgesture_file(path: str | Path) -> Events:
    """One DVS Gesture sample as tonic stores it (module docstring); ``t`` in microseconds."""
    try:
        a = np.load(path)
    except (OSError, ValueError) as err:
        raise EventDataError(f"{path}: not a numpy .npy file ({err})") from None
    if a.ndim != 2 or a.shape[1] != 4:
        raise EventDataError(f"{path}: an array of shape {a.shape}; DVS Gesture samples are (events, 4): x, y, p, t [ms]")
    a = a.astype(np.int64)
    return Events(a[:, 3] * 1000, a[:, 0], a[:, 1], a[:, 2])


def read_shd(path: str | Path) -> tuple[list[Events], np.ndarray]:
    """Every sample of an SHD HDF5 file: ``(events, labels)``; ``t`` in microseconds (rounded)."""
    try:
        import h5py
    except ImportError:
        raise EventDataError(f'{path}: SHD files are HDF5, read with h5py: pip install "localsnn[events]"') from None
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise EventDataError(f"{path}: not an HDF5 file ({err})") from None
    with f:
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise EventDataError(f"{path}: no {key!r}; SHD files hold spikes/times, spikes/units and labels")
        times, units, labels = f["spikes/times"], f["spikes/units"], np.asarray(f["labels"], dtype=np.int64)
        if not len(times) == len(units) == len(labels):
            raise EventDataError(f"{path}: {len(times)} time arrays, {len(units)} unit arrays, {len(labels)} labels")
        out = []
        for k in range(len(labels)):
            t = np.rint(np.asarray(times[k], dtype=np.float64) * 1e6).astype(np.int64)
            u = np.asarray(units[k], dtype=np.int64)
            if t.shape != u.shape:
                raise EventDataError(f"{path}: sample {k} has {t.size} times and {u.size} units")
            zero = np.zeros_like(u)
            out.append(Events(t, u, zero, zero))
    return out, labels


# -- datasets in a folder ------------------------------------------------------------------------


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _where(name: str, split: str, root: Path) -> str:
    archive, md5 = ARCHIVES[name][split]
    return (f"put the {name} {split} files into {root}/ as {LAYOUT[name][split]} (extracted), or the archive {archive} "
            f"(MD5 {md5}) from {ARCHIVES[name]['from']} there, and pass --data-dir {root.parent}")


def _extract(name: str, split: str, root: Path) -> None:
    """Extract the publisher's archive in ``root`` if it is there and its MD5 is the published one."""
    archive, md5 = ARCHIVES[name][split]
    path = root / archive
    if not path.is_file():
        return
    got = _md5(path)
    if got != md5:
        raise EventDataError(f"{path}: MD5 {got}, the published {archive} has {md5}: a different or damaged file; download it again")
    _unpack(path, root)


def _unpack(path: Path, dest: Path) -> None:
    """Extract a .zip or .tar.gz into ``dest``, nothing outside it: zipfile drops absolute and
    ``..`` parts of member names; tarfile's ``data`` filter refuses them, links out of ``dest``
    and special files."""
    import tarfile
    import zipfile

    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                z.extractall(dest)
        else:
            with tarfile.open(path, "r:*") as tar:
                tar.extractall(dest, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as err:
        raise EventDataError(f"{path}: cannot extract it ({err}); free disk space, or extract it by hand into {dest}") from None


def samples(name: str, data_dir: str | Path, split: str = "train", limit: int | None = None) -> Iterator[tuple[Events, int]]:
    """``(events, label)`` of every sample of ``name``'s ``split`` under ``data_dir/<name>/``,
    in a fixed order (sorted paths; SHD: the file's), at most ``limit``."""
    _check_name(name)
    if split not in SPLITS:
        raise EventDataError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    root = Path(data_dir) / name
    n = 0
    if name == "shd":
        path = root / LAYOUT["shd"][split]
        if not path.is_file():
            _extract(name, split, root)
        if not path.is_file():
            raise EventDataError(f"{path}: no such file; {_where(name, split, root)}")
        evs, labels = read_shd(path)
        for ev, label in zip(evs, labels):
            if limit is not None and n >= limit:
                return
            n += 1
            yield ev, int(label)
        return
    top = root / LAYOUT[name][split].split("/")[0]
    if not top.is_dir():
        _extract(name, split, root)
    if not top.is_dir():
        raise EventDataError(f"{top}: no such folder; {_where(name, split, root)}")
    if name == "nmnist":
        files = sorted(top.glob("*/*.bin"))
        label_of = lambda f: int(f.parent.name)  # noqa: E731 - the digit folder
        reader = read_nmnist_file
    else:
        files = sorted(top.glob("user*_*/*.npy"))
        label_of = lambda f: int(f.stem)  # noqa: E731 - the label is the file's name
        reader = read_dvsgesture_file
    if not files:
        raise EventDataError(f"{top}: no sample files; {_where(name, split, root)}")
    for f in files:
        if limit is not None and n >= limit:
            return
        if not re.fullmatch(r"\d+", f.parent.name if name == "nmnist" else f.stem):
            raise EventDataError(f"{f}: not where a sample goes ({LAYOUT[name][split]})")
        label = label_of(f)
        if not 0 <= label < CLASSES[name]:
            raise EventDataError(f"{f}: label {label}; {name} has classes 0..{CLASSES[name] - 1}")
        n += 1
        yield reader(f), label


# -- binning -------------------------------------------------------------------------------------


def channels(name: str, polarity: str = "both", downsample: int = 1) -> int:
    """The number of input channels :func:`bin_events` gives (the spec's ``inputs``)."""
    _check_name(name)
    if name == "shd":
        return SENSORS["shd"][0]
    h, w, _ = SENSORS[name]
    hh, ww = -(-h // downsample), -(-w // downsample)
    return hh * ww * (2 if polarity == "both" else 1)


def bin_events(ev: Events, name: str, *, timesteps: int, window_us: int, mode: str = "count", polarity: str = "both", downsample: int = 1) -> np.ndarray:
    """``[timesteps, channels]`` int64: the events of ``ev`` in ``timesteps`` equal bins of
    ``[0, window_us)`` (module docstring)."""
    _check_name(name)
    if mode not in MODES:
        raise EventDataError(f"unknown binning {mode!r}; allowed: {', '.join(MODES)}")
    if polarity not in POLARITIES:
        raise EventDataError(f"unknown polarity option {polarity!r}; allowed: {', '.join(POLARITIES)}")
    if timesteps < 1 or window_us < 1 or downsample < 1:
        raise EventDataError(f"timesteps, window_us and downsample must be at least 1, not {timesteps}, {window_us}, {downsample}")
    n = channels(name, polarity, downsample)
    t = np.asarray(ev.t, dtype=np.int64)
    keep = (t >= 0) & (t < window_us)
    if name == "shd":
        ch = np.asarray(ev.x, dtype=np.int64)
        bad = (ch < 0) | (ch >= n)
    else:
        h, w, _ = SENSORS[name]
        x, y, p = (np.asarray(a, dtype=np.int64) for a in (ev.x, ev.y, ev.p))
        bad = (x < 0) | (x >= w) | (y < 0) | (y >= h) | (p < 0) | (p > 1)
        ww = -(-w // downsample)
        cell = (y // downsample) * ww + x // downsample
        if polarity == "both":
            ch = p * (n // 2) + cell
        else:
            ch = cell
            if polarity != "merge":
                keep &= p == (1 if polarity == "on" else 0)
    if np.any(bad & keep):
        raise EventDataError(f"{int(np.sum(bad & keep))} event(s) outside the {name} sensor {SENSORS[name]}")
    step = t[keep] * timesteps // window_us
    out = np.zeros((timesteps, n), dtype=np.int64)
    np.add.at(out, (step, ch[keep]), 1)
    return np.minimum(out, 1) if mode == "binary" else out


__all__ = [
    "ARCHIVES", "CLASSES", "LAYOUT", "MODES", "NAMES", "POLARITIES", "SENSORS", "SPLITS", "EventDataError", "Events",
    "bin_events", "channels", "read_dvsgesture_file", "read_nmnist_file", "read_shd", "samples", "write_nmnist_file",
]
