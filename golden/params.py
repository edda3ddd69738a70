"""What the chip stores and learns: weights, DECOLLE biases, readout and feedback matrices.

Weights are held input-major, ``w[j, i]`` from presynaptic ``j`` to neuron ``i``, the layout of
the event-driven hardware (the address of an active input selects a row). Everything is an
integer of the spec's format; :func:`init_params` draws seeded initial values from the
``init`` LFSR (uniform integers), and DECOLLE's readout ``G`` (uniform likewise, as the
classifier's ``init`` says) and feedback ``H`` from the ``readout:<l>`` LFSR.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from localsnn.errors import SpecError, WeightsError
from localsnn.golden.lfsr import LFSR
from localsnn.spec import FixedFormat, NetworkSpec, dumps, loads
from localsnn.util import atomic_write

#: round(2**16 / sqrt(2)): the standard deviation sqrt(1/2) of DECOLLE's omega in Q16
SQRT_HALF_Q16 = 46341


@dataclass
class LayerParams:
    """One hidden layer: ``w`` (fan_in, size), ``bias`` (size,) for DECOLLE neurons, and the
    classifier: ``clf_w`` (size, classes) trainable weights or the fixed readout ``G``, and
    for a random readout the feedback ``H`` (size, classes) that carries its error back."""

    w: np.ndarray
    clf_w: np.ndarray
    bias: np.ndarray | None = None
    feedback: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"w": self.w, "clf_w": self.clf_w}
        if self.bias is not None:
            out["bias"] = self.bias
        if self.feedback is not None:
            out["feedback"] = self.feedback
        return out


@dataclass
class Params:
    layers: list[LayerParams] = field(default_factory=list)

    def copy(self) -> "Params":
        return Params([LayerParams(**{k: v.copy() for k, v in lp.arrays().items()}) for lp in self.layers])

    def digest(self) -> str:
        """SHA-256 of every array (layer, name, dtype, shape, values): equal digests, equal
        parameters."""
        import hashlib

        h = hashlib.sha256()
        for i, lp in enumerate(self.layers):
            for name, a in sorted(lp.arrays().items()):
                a = np.ascontiguousarray(a.astype(np.int64))
                h.update(f"{i}.{name}{a.shape}\0".encode())
                h.update(a.tobytes())
        return h.hexdigest()

    def equal(self, other: "Params") -> bool:
        if len(self.layers) != len(other.layers):
            return False
        for a, b in zip(self.layers, other.layers):
            da, db = a.arrays(), b.arrays()
            if da.keys() != db.keys() or any(not np.array_equal(da[k], db[k]) for k in da):
                return False
        return True


def _uniform(lfsr: LFSR, shape: tuple[int, ...], bound: int) -> np.ndarray:
    """Integers uniform in ``[-bound, bound]``: ``((draw * (2*bound+1)) >> width) - bound``."""
    n = int(np.prod(shape))
    draws = lfsr.draws(n)
    if lfsr.width + (2 * bound + 1).bit_length() <= 63:
        vals = (draws.astype(np.int64) * (2 * bound + 1)) >> lfsr.width
    else:  # exact in Python integers when the product would not fit 63 bits
        vals = np.array([(int(d) * (2 * bound + 1)) >> lfsr.width for d in draws], dtype=np.int64)
    return (vals - bound).reshape(shape)


def sign_concordant_feedback(g: np.ndarray, g_fmt: FixedFormat, h_fmt: FixedFormat, lfsr: LFSR) -> np.ndarray:
    """DECOLLE section 2.3.2: ``H = G * omega``, ``omega ~ N(1, 1/2)`` clipped below at 0.

    ``omega`` is made of integers only: ``z = sum of 12 uniform 16-bit draws - 6 * 2**16``
    (Irwin-Hall, approximately N(0, 1) in Q16), ``omega = 2**16 + (z * SQRT_HALF_Q16 >> 16)``,
    clipped at 0; ``H = (G * omega) >> (16 + g.frac - h.frac)`` rounded and saturated into
    ``h_fmt``. A 16-bit draw is the top 16 bits of an LFSR draw (``draw >> (width - 16)``); an
    LFSR narrower than 16 bits gives its draw scaled up, ``draw << (16 - width)`` (uniform over
    the multiples of ``2**(16 - width)``, the same mean and nearly the same variance). The
    product ``G * omega`` is formed in Python integers (``G`` may be up to 62 bits wide).
    """
    from localsnn.golden.fixed import narrow

    n = g.size
    draws = lfsr.draws(12 * n)
    if lfsr.width >= 16:
        u16 = draws >> np.uint64(lfsr.width - 16)
    else:
        u16 = draws << np.uint64(16 - lfsr.width)
    z = u16.astype(np.int64).reshape(n, 12).sum(axis=1) - 6 * (1 << 16)
    omega = np.maximum((1 << 16) + ((z * SQRT_HALF_Q16) >> 16), 0).reshape(g.shape)
    h, _ = narrow(g.astype(object) * omega.astype(object), 16 + g_fmt.frac - h_fmt.frac, h_fmt)
    return h.astype(np.int64)


def init_params(spec: NetworkSpec) -> Params:
    """Seeded initial parameters (see the module docstring); same spec, same integers."""
    init = LFSR.stream(spec.lfsr.width, spec.lfsr.seed, "init")
    out = []
    for i, layer in enumerate(spec.layers):
        fan_in = spec.fan_in(i)
        w = _uniform(init, (fan_in, layer.size), layer.init.bound(fan_in, layer.weight))
        clf = layer.classifier
        bias = feedback = None
        if layer.neuron.model == "decolle":
            bias = np.zeros(layer.size, dtype=np.int64)
        if clf.kind == "spiking":
            clf_w = _uniform(init, (layer.size, spec.classes), clf.init.bound(layer.size, clf.weight))
        else:
            readout = LFSR.stream(spec.lfsr.width, spec.lfsr.seed, f"readout:{i}")
            clf_w = _uniform(readout, (layer.size, spec.classes), clf.init.bound(layer.size, clf.weight))
            feedback = sign_concordant_feedback(clf_w, clf.weight, clf.feedback, readout)
        out.append(LayerParams(w=w, clf_w=clf_w, bias=bias, feedback=feedback))
    return Params(out)


def _expected(spec: NetworkSpec) -> list[dict[str, tuple[tuple[int, ...], FixedFormat]]]:
    out = []
    for i, layer in enumerate(spec.layers):
        d = {
            "w": ((spec.fan_in(i), layer.size), layer.weight),
            "clf_w": ((layer.size, spec.classes), layer.classifier.weight),
        }
        if layer.neuron.model == "decolle":
            d["bias"] = ((layer.size,), layer.weight)
        if layer.classifier.kind == "random":
            d["feedback"] = ((layer.size, spec.classes), layer.classifier.feedback)
        out.append(d)
    return out


def check_params(spec: NetworkSpec, params: Params, source: str = "parameters") -> None:
    """Raise WeightsError unless ``params`` has the shapes and value ranges ``spec`` needs."""
    expected = _expected(spec)
    if len(params.layers) != len(expected):
        raise WeightsError(f"{source} has {len(params.layers)} layers; the spec {spec.name!r} has {len(expected)}")
    for i, (lp, exp) in enumerate(zip(params.layers, expected)):
        arrays = lp.arrays()
        if set(arrays) != set(exp):
            raise WeightsError(f"{source}, layer {i}: arrays {sorted(arrays)}; the spec needs {sorted(exp)}")
        for name, (shape, fmt) in exp.items():
            a = arrays[name]
            if a.shape != shape:
                raise WeightsError(f"{source}, layer {i} {name}: shape {a.shape}; the spec needs {shape}")
            if a.dtype.kind not in "iu":
                raise WeightsError(f"{source}, layer {i} {name}: dtype {a.dtype}; integers are needed")
            if a.size and (a.min() < fmt.min_int or a.max() > fmt.max_int):
                raise WeightsError(
                    f"{source}, layer {i} {name}: values from {a.min()} to {a.max()} do not fit "
                    f"{fmt.describe()} [{fmt.min_int}, {fmt.max_int}]"
                )


def save_params(params: Params, path: str | Path, spec: NetworkSpec) -> None:
    """Write ``params`` as an ``.npz`` holding ``layer<l>.<name>`` arrays and the spec's TOML."""
    arrays = {f"layer{i}.{k}": v.astype(np.int64) for i, lp in enumerate(params.layers) for k, v in lp.arrays().items()}
    arrays["spec.toml"] = np.frombuffer(dumps(spec).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(Path(path), buf.getvalue())  # a run stopped while writing leaves the old file


def read_npz(path: str | Path, what: str = "weights", fix: str = "write it again") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive ``path``, read and decompressed at once.

    A file that is missing, a folder, empty, not an ``.npz`` archive (a text file, a pickle),
    truncated or corrupted raises :class:`WeightsError` that names the file and what is wrong
    with it and ends with ``fix``, what to do (``what``: the kind of file the command expected)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"no {what} file {path}")
    if path.is_dir():
        raise WeightsError(f"{path} is a folder; give the {what} file (.npz) itself")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): not a {what} file; {fix}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise WeightsError(f"{path} holds one bare numpy array, not a {what} file (an .npz archive of named arrays written by localsnn)")
            return {name: data[name] for name in data.files}
    except WeightsError:
        raise
    except ValueError as err:
        if "pickled" not in str(err):  # numpy: not .npy/.npz, or an object array inside
            raise WeightsError(f"{path} is damaged ({err}); {fix}") from None
        raise WeightsError(f"{path} is not a {what} file: not an .npz archive of named arrays (it reads as text or a pickle, which localsnn never writes)") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as err:
        kind = type(err).__name__ if type(err).__module__ == "builtins" else f"{type(err).__module__}.{type(err).__name__}"
        raise WeightsError(f"{path} is damaged, truncated or not an .npz archive ({kind}: {err}); {fix}") from None


def _same_formats(path: Path, stored: NetworkSpec, spec: NetworkSpec) -> None:
    """Refuse weights written for formats other than ``spec``'s: the same integer means another
    number in another format, so they would load without an error and compute nonsense."""
    have, need = _expected(stored), _expected(spec)
    if len(have) != len(need):
        raise WeightsError(f"{path} holds {len(have)} layers (by the spec stored in the file, {stored.name!r}); the spec it is loaded with ({spec.name!r}) has {len(need)}")
    for i, (h, n) in enumerate(zip(have, need)):
        if set(h) != set(n):
            raise WeightsError(f"{path}, layer {i}: arrays {sorted(h)} (by the spec stored in the file, {stored.name!r}); the spec it is loaded with ({spec.name!r}) needs {sorted(n)}")
        for name in n:
            (hs, hf), (ns, nf) = h[name], n[name]
            if (hf.width, hf.frac, hf.signed) != (nf.width, nf.frac, nf.signed):
                raise WeightsError(
                    f"{path}, layer {i} {name}: written as {hf.describe()} (by the spec stored in the file, {stored.name!r}); "
                    f"the spec it is loaded with ({spec.name!r}) needs {nf.describe()}: load the weights with the spec they were written for"
                )
            if hs != ns:
                raise WeightsError(f"{path}, layer {i} {name}: shape {hs} (by the spec stored in the file, {stored.name!r}); the spec it is loaded with ({spec.name!r}) needs {ns}")


def params_from_arrays(arrays: dict[str, np.ndarray], path: str | Path) -> Params:
    """The ``layer<l>.<name>`` arrays of a weights file or checkpoint as :class:`Params`; a layer
    without ``w`` or ``clf_w``, or with arrays localsnn does not write, is a WeightsError."""
    names = [n for n in arrays if n.startswith("layer")]
    count = 1 + max((int(n[5:].split(".")[0]) for n in names if n[5:].split(".")[0].isdigit()), default=-1)
    layers = []
    for i in range(count):
        kw = {k.split(".", 1)[1]: arrays[k] for k in names if k.startswith(f"layer{i}.")}
        if "w" not in kw or "clf_w" not in kw:
            raise WeightsError(f"{path}: layer {i} lacks 'w' or 'clf_w'")
        unknown = set(kw) - {"w", "clf_w", "bias", "feedback"}
        if unknown:
            raise WeightsError(f"{path}: layer {i} holds arrays {sorted(unknown)} that localsnn does not write (w, clf_w, bias, feedback)")
        layers.append(LayerParams(**kw))
    return Params(layers)


def load_params(path: str | Path, spec: NetworkSpec) -> Params:
    """Read parameters written by :func:`save_params` and check them against ``spec``: every
    array's format (width, fractional bits, sign) and shape as the spec stored in the file
    says, then the arrays themselves (shapes, integer values in range)."""
    path = Path(path)
    arrays = read_npz(path)
    stored_toml = arrays.pop("spec.toml", None)
    if stored_toml is None:
        raise WeightsError(f"{path} holds no spec.toml: not a weights file written by localsnn (golden train, export, board run --save-weights)")
    try:
        stored = loads(bytes(stored_toml).decode(), source=f"{path}: spec.toml")
    except (SpecError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path}: the spec stored in it is not a valid spec ({err})") from None
    _same_formats(path, stored, spec)
    layers = params_from_arrays(arrays, path).layers
    params = Params(layers)
    check_params(spec, params, str(path))
    return params


def describe(params: Params) -> str:
    return json.dumps([{k: list(v.shape) for k, v in lp.arrays().items()} for lp in params.layers])
