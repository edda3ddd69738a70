"""Event datasets (``localsnn.events``): the readers on small files written here in each
dataset's own format (nothing of the real datasets can be downloaded here), the binning against
an independent ``numpy.histogramdd``, and the errors for missing or wrong files."""

from __future__ import annotations

import hashlib
import zipfile

import h5py
import numpy as np
import pytest

from localsnn import events as E


def _random_events(rng, n: int, sensor, window_us: int) -> E.Events:
    h, w, _ = sensor
    return E.Events(np.sort(rng.integers(0, window_us, n)), rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n))


def _nmnist_folder(root, rng, per_digit: int = 2):
    """``root/nmnist/Train/<digit>/<nnnnn>.bin``: random events in N-MNIST's 5-byte format."""
    written = {}
    for digit in range(10):
        folder = root / "nmnist" / "Train" / str(digit)
        folder.mkdir(parents=True)
        for k in range(per_digit):
            ev = _random_events(rng, int(rng.integers(50, 400)), E.SENSORS["nmnist"], 300_000)
            path = folder / f"{digit * 100 + k:05d}.bin"
            E.write_nmnist_file(path, ev)
            written[path] = (ev, digit)
    return written


def test_nmnist_files_read_back_as_written_and_overflow_markers_advance_time(tmp_path):
    rng = np.random.default_rng(0)
    written = _nmnist_folder(tmp_path, rng)
    got = list(E.samples("nmnist", tmp_path, "train"))
    assert len(got) == 20 and [label for _, label in got] == [d for d in range(10) for _ in range(2)]
    for (ev, label), (path, (want, digit)) in zip(got, sorted(written.items())):
        assert label == digit
        for a, b in zip((ev.t, ev.x, ev.y, ev.p), (want.t, want.x, want.y, want.p)):
            assert np.array_equal(a, b)
    # the byte layout by hand: x = 3, y = 5, p = 1, t = 0x012345; then an overflow marker (y = 240)
    raw = bytes([3, 5, 0x80 | 0x01, 0x23, 0x45, 0, 240, 0, 0, 0, 7, 8, 0x00, 0x00, 0x10])
    (tmp_path / "one.bin").write_bytes(raw)
    ev = E.read_nmnist_file(tmp_path / "one.bin")
    assert ev.x.tolist() == [3, 7] and ev.y.tolist() == [5, 8] and ev.p.tolist() == [1, 0]
    assert ev.t.tolist() == [0x012345, 0x10 + E.NMNIST_OVERFLOW_US]
    (tmp_path / "bad.bin").write_bytes(raw[:7])
    with pytest.raises(E.EventDataError, match="7 bytes, not a whole number of 5-byte N-MNIST events"):
        E.read_nmnist_file(tmp_path / "bad.bin")


def test_shd_and_dvs_gesture_files_read_back(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "shd").mkdir()
    n = 5
    times = [np.sort(rng.random(int(rng.integers(10, 80)))).astype(np.float16) for _ in range(n)]  # seconds, float16 as SHD stores them
    units = [rng.integers(0, 700, t.size).astype(np.uint16) for t in times]
    labels = rng.integers(0, 20, n).astype(np.uint8)
    with h5py.File(tmp_path / "shd" / "shd_test.h5", "w") as f:
        f.create_dataset("spikes/times", data=np.array(times, dtype=object), dtype=h5py.vlen_dtype(np.float16))
        f.create_dataset("spikes/units", data=np.array(units, dtype=object), dtype=h5py.vlen_dtype(np.uint16))
        f.create_dataset("labels", data=labels)
        f.create_dataset("extra/speaker", data=np.zeros(n, dtype=np.uint8))
    got = list(E.samples("shd", tmp_path, "test"))
    assert [label for _, label in got] == labels.tolist()
    for (ev, _), t, u in zip(got, times, units):
        assert np.array_equal(ev.x, u) and np.array_equal(ev.t, np.rint(t.astype(np.float64) * 1e6).astype(np.int64))

    folder = tmp_path / "dvsgesture" / "ibmGestureTest" / "user24_led"
    folder.mkdir(parents=True)
    want = {}
    for label in (0, 4, 10):
        ev = _random_events(rng, 300, E.SENSORS["dvsgesture"], 6000)
        np.save(folder / f"{label}.npy", np.stack([ev.x, ev.y, ev.p, ev.t], axis=1).astype(np.float64))  # t in ms
        want[label] = ev
    got = list(E.samples("dvsgesture", tmp_path, "test"))
    assert sorted(label for _, label in got) == [0, 4, 10]
    for ev, label in got:
        assert np.array_equal(ev.t, want[label].t * 1000) and np.array_equal(ev.x, want[label].x)


@pytest.mark.parametrize("name, polarity, downsample, mode", [
    ("nmnist", "both", 1, "count"), ("nmnist", "merge", 2, "binary"), ("nmnist", "on", 3, "count"),
    ("dvsgesture", "both", 4, "count"), ("dvsgesture", "off", 4, "binary"), ("shd", "both", 1, "count"),
])
def test_binning_equals_an_independent_histogram(name, polarity, downsample, mode):
    """``bin_events`` against ``numpy.histogramdd`` over (time, p, y, x) with the same edges,
    events past the window included (they must be dropped)."""
    rng = np.random.default_rng(2)
    window, T = 300_000, 7
    if name == "shd":
        ev = E.Events(rng.integers(0, window + 50_000, 3000), rng.integers(0, 700, 3000), np.zeros(3000, int), np.zeros(3000, int))
    else:
        ev = _random_events(rng, 3000, E.SENSORS[name], window + 50_000)
    got = E.bin_events(ev, name, timesteps=T, window_us=window, mode=mode, polarity=polarity, downsample=downsample)
    assert got.shape == (T, E.channels(name, polarity, downsample))
    t_edges = np.linspace(0, window, T + 1)
    if name == "shd":
        hist, _ = np.histogramdd(np.stack([ev.t, ev.x], 1), bins=(t_edges, np.arange(701)))
    else:
        h, w, _ = E.SENSORS[name]
        hh, ww = -(-h // downsample), -(-w // downsample)
        p = ev.p
        pts = np.stack([ev.t, p, ev.y // downsample, ev.x // downsample], 1)
        hist, _ = np.histogramdd(pts, bins=(t_edges, [-0.5, 0.5, 1.5], np.arange(hh + 1) - 0.5, np.arange(ww + 1) - 0.5))
        if polarity == "merge":
            hist = hist.sum(1, keepdims=True)
        elif polarity in ("on", "off"):
            hist = hist[:, [1 if polarity == "on" else 0]]
        hist = hist.reshape(T, -1)
    want = hist.astype(np.int64)
    if mode == "binary":
        want = np.minimum(want, 1)
    assert np.array_equal(got, want)
    assert got.sum() > 0


def test_missing_and_wrong_files_say_where_the_files_go(tmp_path):
    with pytest.raises(E.EventDataError, match=r"nmnist/Train: no such folder; put the nmnist train files into .*nmnist/ as Train/<digit>/<nnnnn>\.bin .*Train\.zip \(MD5 20959b8e626244a1b502305a9e6e2031\)"):
        next(E.samples("nmnist", tmp_path, "train"))
    with pytest.raises(E.EventDataError, match=r"shd/shd_train\.h5: no such file; .*shd_train\.h5\.zip \(MD5 f3252aeb598ac776c1b526422d90eecb\)"):
        next(E.samples("shd", tmp_path, "train"))
    with pytest.raises(E.EventDataError, match="unknown event dataset 'cifar10dvs'; allowed: nmnist, dvsgesture, shd"):
        next(E.samples("cifar10dvs", tmp_path))
    # an archive with another digest than the published one is refused, not extracted
    (tmp_path / "nmnist").mkdir()
    with zipfile.ZipFile(tmp_path / "nmnist" / "Train.zip", "w") as z:
        z.writestr("Train/0/00000.bin", b"\x01\x02\x03\x04\x05")
    got = hashlib.md5((tmp_path / "nmnist" / "Train.zip").read_bytes()).hexdigest()
    with pytest.raises(E.EventDataError, match=f"Train.zip: MD5 {got}, the published Train.zip has 20959b8e626244a1b502305a9e6e2031"):
        next(E.samples("nmnist", tmp_path, "train"))
    assert not (tmp_path / "nmnist" / "Train").exists()
    with pytest.raises(E.EventDataError, match="outside the nmnist sensor"):
        E.bin_events(E.Events(np.array([0]), np.array([40]), np.array([0]), np.array([0])), "nmnist", timesteps=2, window_us=10)
