"""NIR in and out: a localsnn net as a Neuromorphic Intermediate Representation graph, and a
NIR graph (from snnTorch, Norse, or ours) as a spec and its weights (docs/nir.md).

    graph = to_graph(spec, params)                 # nir.NIRGraph; write_nir(spec, path, params)
    net = from_graph(nir.read("net.nir"))          # Imported: spec, float weights, params, notes
    import_nir("net.nir", "imported/")             # spec.toml + weights.npz that golden, rtl, train load

**The neuron.** NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``, spiking at ``v > v_threshold``
and then ``v = v_reset``, in continuous time. Ours (Ma et al. eq. 2-3, ``spec.NeuronSpec``)
is discrete: ``u[t] = d (u[t-1] - theta o[t-1]) + I[t]``, ``o[t] = [u[t] >= theta]``, a reset
by subtraction. The exporters discretise NIR's LIF by Euler with a step ``dt`` that the graph
does not hold (snnTorch writes and reads ``dt = 1e-4``, Norse's ``from_nir`` takes ``dt=``):

    v[t] = (1 - dt/tau) v[t-1] + (dt/tau) r I[t]     so   d = 1 - dt/tau,   I_ours = (dt r / tau) I_nir

**Export** writes every LIF with ``tau = dt / (1 - d)``, ``r = 1``, ``v_leak = 0``,
``v_reset = 0``, ``v_threshold = theta`` (one value per neuron) and the weights of the Linear
node before it times ``1 / (1 - d)``: with ``r = 1`` Norse (which ignores ``r``) and snnTorch
(which scales its threshold by ``r dt / tau``) both read the dynamics right. NIR has no field for
a subtractive reset, and snnTorch writes ``v_reset = 0`` for every reset mechanism; ours say
``metadata = {"reset": "subtract", "dt": dt, "decay": d}`` on each LIF, and the graph's metadata
carries the spec (TOML), so that our import restores every format. A layer without leak
(``d = 1``) is written as NIR's IF, ``r = 1``, and its weights as they are.

**IF.** NIR's IF is ``C dv/dt = r I`` without leak; Norse reads it as ``v[t] = v[t-1] + r I[t]``
(its IAFCell adds the input without ``dt``), and so do we: ``d = 1``, ``w_ours = r w_nir``. The
spec holds ``d = 1`` in a decay format with one integer bit and ``tau`` = :data:`IF_TAU`.

**Import** reads a chain ``Input [-> Flatten] -> (Linear|Affine -> LIF|IF)+ -> Output``, with
classifier branches ``LIF -> Linear -> LIF -> Output`` (ours) where present: the LIF that feeds an
Output is a classifier, of the hidden layer before it; a hidden layer without one (the middle
layers of an snnTorch chain) gets the base spec's random classifier, which learns on chip. It
refuses, naming the node and the parameter, what would change the dynamics: ``v_leak != 0``, a
hard reset (``v_reset != 0``, or ``metadata["reset"]`` other than ``"subtract"``), a ``tau``,
threshold or ``r`` that differ between the neurons of a layer (the spec has one per layer), an
Affine bias other than 0, ``tau < dt``, recurrent edges, and nodes the chip has no layer for.
A LIF without reset metadata (snnTorch's) is read as resetting by subtraction: the note says so.

**Fixed point.** Without ``formats`` the formats, ``T``, encoding and learning come from the
shipped ``digits`` spec, except the weights': each layer's weight and classifier weight format
keeps the base's width and takes the fewest integer bits that hold its largest ``|w|`` (the
rest fraction); the decay format the fewest fraction bits (at least the base's, at most 16)
that hold ``d`` exactly, else the base's, rounded, with a note. ``formats`` (a spec) gives all
formats instead, used as they are. The weights are quantized by :func:`golden.quantize.to_params`
(saturation counted, :func:`describe_report`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from localsnn import spec as S
from localsnn.errors import LocalsnnError, SpecError
from localsnn.golden.params import Params, init_params, save_params
from localsnn.golden.quantize import ArrayReport, describe_report, to_params

#: the time step the graph's time constants assume (snnTorch's exporter and importer use it)
DT = 1e-4
#: the reset written in (and expected from) a LIF node's metadata
RESET = "subtract"
#: the base spec of an import without ``formats``
BASE = "digits"
#: how close an exporter's float32 value must be to be taken as the exact one (a decay on the
#: decay format's grid, an input gain of 1, equal values across a layer)
TOLERANCE = 1e-6
#: fraction bits of an imported layer's potential beyond its weights' (measured on the test's
#: 16-24-16-4 snnTorch net, golden deciding as the float model: 91.7 % with the digits spec's
#: s16.8 potential, 97.0 % with 0 guard bits (s24.12), 98.7 % with 4 (s24.16))
GUARD_BITS = 4
#: the widest decay fraction an import chooses to hold ``d`` exactly
MAX_DECAY_FRAC = 16
#: the spec's ``tau`` of an IF neuron (``d = 1``): ``exp(-1/tau)`` rounds to exactly 1 in any
#: decay format of up to MAX_DECAY_FRAC fraction bits rounded to nearest (the spec's ``tau`` is finite)
IF_TAU = 1e7
INSTALL_HINT = 'pip install "localsnn[nir]"'


class NIRError(LocalsnnError, ValueError):
    """A NIR graph that localsnn cannot read as it is (the message names the node and why)."""


def _nir():
    try:
        import nir
    except ImportError:
        raise LocalsnnError(f"NIR needs the nir package: {INSTALL_HINT}") from None
    return nir


# -- export ---------------------------------------------------------------------------------------


def _real(ints: np.ndarray, fmt: S.FixedFormat) -> np.ndarray:
    return np.ldexp(np.asarray(ints, dtype=np.float64), -fmt.frac)


def _lif(nir, neuron: S.NeuronSpec, size: int, dt: float):
    """NIR LIF of ``size`` neurons with the spec's ``d`` and ``theta``: ``tau = dt / (1 - d)``,
    ``r = 1``; for ``d = 1`` (no leak) an IF node, ``r = 1``."""
    d = neuron.alpha.value
    ones = np.ones(size)
    if d >= 1.0:
        return nir.IF(r=ones, v_threshold=ones * neuron.threshold, v_reset=0 * ones, metadata={"reset": RESET, "dt": dt, "decay": d})
    return nir.LIF(tau=ones * (dt / (1.0 - d)), r=ones, v_leak=0 * ones, v_threshold=ones * neuron.threshold, v_reset=0 * ones,
                   metadata={"reset": RESET, "dt": dt, "decay": d})


def to_graph(spec: S.NetworkSpec, params: Params | None = None, dt: float = DT):
    """The net of ``spec`` with ``params`` (default: its initial ones) as a ``nir.NIRGraph``:
    nodes ``input``, per layer ``layer<i>.w`` (Linear), ``layer<i>`` (LIF), ``layer<i>.clf_w``,
    ``layer<i>.clf`` and ``layer<i>.out`` (Output; the last layer's classifier: ``output``)."""
    nir = _nir()
    _check_lif(spec)
    params = params if params is not None else init_params(spec)
    nodes = {"input": nir.Input(input_type=np.array([spec.inputs]))}
    edges = []
    prev = "input"
    last = len(spec.layers) - 1
    for i, (ls, lp) in enumerate(zip(spec.layers, params.layers)):
        cn = ls.classifier.neuron
        w = _real(lp.w, ls.weight)  # (fan_in, size)
        cw = _real(lp.clf_w, ls.classifier.weight)  # (size, classes)
        name = f"layer{i}"
        nodes[f"{name}.w"] = nir.Linear(weight=w.T * _weight_scale(ls.neuron))
        nodes[name] = _lif(nir, ls.neuron, ls.size, dt)
        nodes[f"{name}.clf_w"] = nir.Linear(weight=cw.T * _weight_scale(cn))
        nodes[f"{name}.clf"] = _lif(nir, cn, spec.classes, dt)
        out = "output" if i == last else f"{name}.out"
        nodes[out] = nir.Output(output_type=np.array([spec.classes]))
        edges += [(prev, f"{name}.w"), (f"{name}.w", name), (name, f"{name}.clf_w"), (f"{name}.clf_w", f"{name}.clf"), (f"{name}.clf", out)]
        prev = name
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"producer": "localsnn", "spec": S.dumps(spec), "dt": dt})


def _weight_scale(neuron: S.NeuronSpec) -> float:
    """NIR's weights over ours before a neuron of ``neuron``: ``1 / (1 - d)`` for a LIF (its
    input gain is ``r dt / tau = 1 - d``), 1 for an IF (``d = 1``: ``v[t] = v[t-1] + r I``)."""
    d = neuron.alpha.value
    return 1.0 if d >= 1.0 else 1.0 / (1.0 - d)


def _check_lif(spec: S.NetworkSpec) -> None:
    for i, ls in enumerate(spec.layers):
        if ls.neuron.model != "lif" or ls.classifier.kind != "spiking":
            raise NIRError(
                f"layer {i}: {ls.neuron.model!r} neurons with a {ls.classifier.kind!r} readout have no NIR node this exporter writes "
                "(NIR's CubaLIF has one synaptic current and a hard reset, not DECOLLE's traces P, Q, R and its random readout); "
                "NIR export takes nets of 'lif' neurons with spiking classifiers"
            )


def write_nir(spec: S.NetworkSpec, path: str | Path, params: Params | None = None, dt: float = DT):
    """Write :func:`to_graph` to ``path`` (NIR's HDF5 file); returns the graph."""
    nir = _nir()
    graph = to_graph(spec, params, dt)
    nir.write(str(path), graph)
    return graph


# -- import ---------------------------------------------------------------------------------------


@dataclass
class Imported:
    """What :func:`from_graph` read: the spec, the float weights per layer (``w`` (fan_in,
    size), ``clf_w`` (size, classes), in our units), golden's parameters quantized from them
    with the report, and notes on every choice made."""

    spec: S.NetworkSpec
    weights: list[dict[str, np.ndarray]]
    params: Params
    report: list[ArrayReport]
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        sizes = "-".join(str(n) for n in [self.spec.inputs, *(ls.size for ls in self.spec.layers), self.spec.classes])
        lines = [f"{self.spec.name}: {sizes}, T = {self.spec.timesteps}, rule {self.spec.learning.rule}"]
        for i, ls in enumerate(self.spec.layers):
            for what, n, fmt in (("layer", ls.neuron, ls.weight), ("classifier", ls.classifier.neuron, ls.classifier.weight)):
                lines.append(f"  layer {i} {what:10s} d = {n.alpha.value:.8g} ({n.decay.describe()}), theta = {n.threshold:g}, weights {fmt.describe()}, potential {n.potential.describe()}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n" + describe_report(self.report)


def _uniform(node: str, what: str, values, *, positive: bool = False) -> float:
    a = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if a.size == 0 or not np.isfinite(a).all():
        raise NIRError(f"node {node!r}: {what} must be finite numbers, not {a!r}")
    v = float(a.flat[0])
    if not np.allclose(a, v, rtol=TOLERANCE, atol=0.0):
        raise NIRError(f"node {node!r}: {what} differs between the neurons (from {a.min():g} to {a.max():g}); the spec has one {what} per layer")
    if positive and v <= 0:
        raise NIRError(f"node {node!r}: {what} = {v:g} must be positive")
    return v


@dataclass
class _LIF:
    node: str
    size: int
    decay: float  # d = 1 - dt/tau (an IF: 1)
    threshold: float
    gain: np.ndarray  # per neuron: our input current = gain * NIR's (r dt / tau)


def _read_lif(nir, name: str, node, dt_default: float, notes: list[str], rows: int | None = None) -> _LIF:
    """One LIF or IF node's constants, or NIRError; appends the node's name to ``notes`` when its
    metadata says nothing of the reset. An IF node is ``v[t] = v[t-1] + r I[t]`` (``d = 1``), as
    Norse writes and reads it (its ``IAFCell`` adds the input as it is, without ``dt``).
    ``rows``: the neurons of the weights before it, the layer's size where the node's
    parameters are scalars (Norse writes them so)."""
    if type(node).__name__ == "CubaLIF":
        raise NIRError(f"node {name!r}: CubaLIF (a synaptic current before the membrane) is not the chip's LIF (Ma eq. 2-3), nor DECOLLE's traces")
    meta = dict(getattr(node, "metadata", None) or {})
    is_if = isinstance(node, nir.IF)
    size = int(np.atleast_1d(node.v_threshold if is_if else node.tau).size)
    if size == 1 and rows is not None:
        size = rows
    if not is_if and not np.allclose(np.asarray(node.v_leak, dtype=np.float64), 0.0, atol=0.0):
        raise NIRError(f"node {name!r}: v_leak = {np.unique(node.v_leak)[:4]} (not 0): the chip's potentials decay towards 0")
    if not np.allclose(np.asarray(node.v_reset, dtype=np.float64), 0.0, atol=0.0):
        raise NIRError(f"node {name!r}: v_reset = {np.unique(node.v_reset)[:4]}: a hard reset to a value; the chip resets by subtracting the threshold")
    reset = meta.get("reset")
    if reset is not None and str(reset) != RESET:
        raise NIRError(f"node {name!r}: metadata reset = {reset!r}: a hard reset; the chip resets by subtracting the threshold ({RESET!r})")
    if reset is None:
        notes.append((name, is_if))  # gathered into one note per kind by from_graph
    dt = float(meta.get("dt", dt_default))
    theta = _uniform(name, "v_threshold", node.v_threshold, positive=True)
    r = np.atleast_1d(np.asarray(node.r, dtype=np.float64)) * np.ones(size)
    if is_if:
        return _LIF(name, size, 1.0, theta, r)
    tau = _uniform(name, "tau", node.tau, positive=True)
    if tau < dt:
        raise NIRError(f"node {name!r}: tau = {tau:g} is shorter than the step dt = {dt:g} (d = 1 - dt/tau would be negative); pass the exporter's dt")
    gain = r * dt / tau
    gain = np.where(np.abs(gain - 1.0) < TOLERANCE, 1.0, gain)  # an exporter's float32 r = tau/dt: exactly 1
    d = float(meta["decay"]) if "decay" in meta else 1.0 - dt / tau
    return _LIF(name, size, d, theta, gain)


def _chain(nir, graph) -> tuple[int, list[tuple[str, str, str | None, str | None]]]:
    """``(inputs, [(weight node, LIF node, classifier weight node, classifier LIF node)])`` of
    the hidden layers, in order (see the module docstring)."""
    nodes, edges = graph.nodes, graph.edges
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise NIRError(f"edge {a!r} -> {b!r} names a node the graph does not hold")
        succ[a].append(b)
        pred[b].append(a)
    known = (nir.Input, nir.Output, nir.Linear, nir.Affine, nir.LIF, nir.IF, nir.Flatten)
    for k, n in nodes.items():
        if type(n).__name__ == "CubaLIF":
            _read_lif(nir, k, n, DT, [])  # its own message
        if not isinstance(n, known):
            why = {"Conv2d": "the chip has fully connected layers only (train's --arch has convolutions in floats, golden and the RTL do not)",
                   "Conv1d": "the chip has fully connected layers only",
                   "SumPool2d": "the chip has no pooling", "AvgPool2d": "the chip has no pooling",
                   "NIRGraph": "a subgraph (snnTorch's recurrent layers): the chip's layers are feedforward"}.get(type(n).__name__, "the chip has no such layer")
            raise NIRError(f"node {k!r}: {type(n).__name__} is not supported: {why}; supported: Input, Flatten (of the input), Linear/Affine, LIF, IF, Output")
        if len(pred[k]) > 1:
            raise NIRError(f"node {k!r} has {len(pred[k])} inputs ({', '.join(pred[k])}): recurrent or merging edges; the chip's layers are a feedforward chain")
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRError(f"the graph has {len(inputs)} Input nodes; localsnn reads one")
    cur = inputs[0]
    size = int(np.prod(next(iter(dict(nodes[cur].input_type).values())) if isinstance(nodes[cur].input_type, dict) else nodes[cur].input_type))

    def one(k: str) -> str:
        if len(succ[k]) != 1:
            raise NIRError(f"node {k!r} feeds {len(succ[k])} nodes ({', '.join(succ[k]) or 'nothing'}); expected one")
        return succ[k][0]

    nxt = one(cur)
    while isinstance(nodes[nxt], nir.Flatten):
        cur, nxt = nxt, one(nxt)

    def affine_lif(w: str) -> str:
        if not isinstance(nodes[w], (nir.Linear, nir.Affine)):
            raise NIRError(f"node {w!r}: {type(nodes[w]).__name__} where a Linear or Affine node (the synapses of a layer) must come")
        lif = one(w)
        if not isinstance(nodes[lif], (nir.LIF, nir.IF)):
            raise NIRError(f"node {lif!r}: {type(nodes[lif]).__name__} after the weights {w!r}; expected a LIF or an IF")
        return lif

    def feeds_output(lif: str) -> bool:
        return any(isinstance(nodes[s], nir.Output) for s in succ[lif])

    layers: list[tuple[str, str, str | None, str | None]] = []
    w, lif = nxt, affine_lif(nxt)
    if feeds_output(lif):
        raise NIRError(f"node {lif!r} feeds the output directly: a net without a hidden layer; localsnn nets have at least one hidden layer and its classifier")
    while True:
        outs = succ[lif]
        if not outs:
            raise NIRError(f"node {lif!r} feeds nothing")
        branches = []
        for s in outs:
            if isinstance(nodes[s], nir.Output):
                raise NIRError(f"node {lif!r}: a hidden layer that feeds an Output directly; its classifier goes through weights")
            branches.append((s, affine_lif(s)))
        clf = [(a, b) for a, b in branches if feeds_output(b)]
        deeper = [(a, b) for a, b in branches if not feeds_output(b)]
        if len(clf) > 1 or len(deeper) > 1:
            raise NIRError(f"node {lif!r} feeds {len(branches)} layers; a layer feeds at most the next layer and its classifier")
        for _, b in clf:
            if len(succ[b]) != 1:
                raise NIRError(f"node {b!r}: a classifier that feeds more than its Output")
        cw, cl = clf[0] if clf else (None, None)
        layers.append((w, lif, cw, cl))
        if not deeper:
            if cl is None:
                raise NIRError(f"node {lif!r}: the last layer has no classifier (Linear -> LIF -> Output)")
            return size, layers
        w, lif = deeper[0]


def _rows(node) -> int | None:
    """The output neurons of a Linear/Affine node (its weight's rows)."""
    w = np.asarray(getattr(node, "weight", None))
    return int(w.shape[0]) if w.ndim == 2 else None


def _weights(nir, name: str, node, fan_in: int, size: int) -> np.ndarray:
    w = np.asarray(node.weight, dtype=np.float64)
    if w.shape != (size, fan_in):
        raise NIRError(f"node {name!r}: weight of shape {w.shape}; the layer has {size} neurons and {fan_in} inputs, so ({size}, {fan_in})")
    bias = getattr(node, "bias", None)
    if bias is not None and np.any(np.asarray(bias, dtype=np.float64) != 0):
        raise NIRError(f"node {name!r}: bias {np.unique(bias)[:4]}...: the chip's LIF layers have no bias; a net without biases (Linear(..., bias=False)) imports")
    return w


def _choose_weight_format(base: S.FixedFormat, w: np.ndarray) -> S.FixedFormat:
    """The base's format if it holds ``max |w|``, else the base's width with the fewest
    integer bits that do (the base's fraction keeps the learning-rate shifts the base allows)."""
    peak = float(np.abs(w).max(initial=0.0))
    for frac in range(base.frac, -1, -1):
        f = dataclasses.replace(base, frac=frac)
        if f.to_real(f.max_int) >= peak and f.to_real(f.min_int) <= -peak:
            return f
    return dataclasses.replace(base, frac=0)


def _choose_decay(base: S.FixedFormat, d: float, where: str, notes: list[str]) -> tuple[S.FixedFormat, float]:
    """(decay format, the spec's ``tau``) for the decay ``d``; ``d = 1`` (an IF) gets an integer
    bit and rounding to nearest (``exp(-1/IF_TAU)`` rounds to 1 there)."""
    if d >= 1.0:
        fmt = dataclasses.replace(base, width=max(base.width, base.frac + 1), rounding="nearest")
        return fmt, IF_TAU
    for frac in range(base.frac, MAX_DECAY_FRAC + 1):
        k = d * 2**frac
        if abs(k - round(k)) < TOLERANCE * 2**frac:
            fmt = dataclasses.replace(base, width=max(base.width - base.frac + frac, frac), frac=frac)
            d_exact = round(k) / 2**frac
            break
    else:
        fmt = base
        d_exact = d
        q = round(d * 2**base.frac) / 2**base.frac
        notes.append(f"{where}: decay d = {d:.10g} is no multiple of 2^-{MAX_DECAY_FRAC}: rounded to {q:.10g} in {base.describe()} (the spikes can differ from the source's)")
    return fmt, _tau_for(d_exact)


def from_graph(graph, *, formats: S.NetworkSpec | None = None, timesteps: int | None = None, dt: float | None = None, name: str | None = None) -> Imported:
    """Read ``graph`` (a ``nir.NIRGraph``) as a localsnn net (module docstring). ``name``: the
    spec's (default: that of our own export's spec, else ``nir``)."""
    nir = _nir()
    meta = dict(getattr(graph, "metadata", None) or {})
    dt = float(dt if dt is not None else meta.get("dt", DT))
    notes: list[str] = []
    unmarked: list[tuple[str, bool]] = []  # (LIF or IF node, is IF) whose metadata says nothing of the reset
    inputs, chain = _chain(nir, graph)
    own = formats is None and "spec" in meta
    if own:  # our own export: its spec holds every format
        base = S.loads(str(meta["spec"]))
    else:
        base = formats if formats is not None else S.load(BASE)
    keep = formats is not None or own
    name = name or (base.name if own else "nir")
    try:  # the formats chosen (or given) must hold what the graph says
        classes = None
        layers, weights = [], []
        fan_in = inputs
        for i, (wn, ln, cwn, cln) in enumerate(chain):
            lif = _read_lif(nir, ln, graph.nodes[ln], dt, unmarked, _rows(graph.nodes[wn]))
            w = _weights(nir, wn, graph.nodes[wn], fan_in, lif.size) * lif.gain[:, None]
            tmpl = base.layers[min(i, len(base.layers) - 1)]
            neuron, clf = tmpl.neuron, tmpl.classifier
            if cln is not None:
                c = _read_lif(nir, cln, graph.nodes[cln], dt, unmarked, _rows(graph.nodes[cwn]))
                if classes is not None and c.size != classes:
                    raise NIRError(f"node {cln!r}: a classifier of {c.size} classes, another of {classes}")
                classes = c.size
                cw = _weights(nir, cwn, graph.nodes[cwn], lif.size, c.size) * c.gain[:, None]
                cfmt = clf.weight if keep else _choose_weight_format(clf.weight, cw)
                cneuron, cacc = _neuron(clf.neuron, c, keep, notes), clf.accumulator
                if not keep:
                    cneuron, cacc = _finer_potential(cneuron, cacc, cfmt)
                clf = dataclasses.replace(clf, neuron=cneuron, weight=cfmt, accumulator=cacc)
            else:
                cw = None
                notes.append(f"layer {i} ({ln}): no classifier in the graph: the base spec's random one ({clf.init.kind}, scale {clf.init.scale:g}), which learns on chip")
            neuron, acc = _neuron(neuron, lif, keep, notes), tmpl.accumulator
            wfmt = tmpl.weight if keep else _choose_weight_format(tmpl.weight, w)
            if not keep:
                neuron, acc = _finer_potential(neuron, acc, wfmt)
            layers.append(dataclasses.replace(tmpl, size=lif.size, neuron=neuron, weight=wfmt, accumulator=acc, classifier=clf))
            weights.append({"w": w.T, "clf_w": None if cw is None else cw.T})
            fan_in = lif.size
        spec = _with_learning_rate(base, notes, name=name, inputs=inputs, classes=classes, timesteps=timesteps or base.timesteps, layers=tuple(layers))
        S.loads(S.dumps(spec))  # every check a spec file gets
    except SpecError as err:
        raise NIRError(f"the spec made from the graph does not hold: {err}; give the formats with --formats SPEC") from None
    lif_names = [n for n, is_if in unmarked if not is_if]
    if_names = [n for n, is_if in unmarked if is_if]
    if if_names:
        notes.insert(0, f"IF nodes {', '.join(map(repr, if_names))}: no reset in their metadata (Norse's IAFCell resets to v_reset, a hard reset): "
                        "read as a reset by subtraction, the chip's; the spikes differ from such a source's wherever a potential passes the threshold")
    if lif_names:
        notes.insert(0, f"LIF nodes {', '.join(map(repr, lif_names))}: no reset in their metadata (snnTorch writes v_reset = 0 for every reset mechanism): "
                        "read as a reset by subtraction, as snnTorch's Leaky(reset_mechanism='subtract') has")
    init = init_params(spec)
    for i, w in enumerate(weights):
        if w["clf_w"] is None:
            ls = spec.layers[i]
            w["clf_w"] = _real(init.layers[i].clf_w, ls.classifier.weight)
    params, report = to_params(spec, weights, "the NIR graph")
    return Imported(spec, weights, params, report, notes)


def _neuron(tmpl: S.NeuronSpec, lif: _LIF, keep: bool, notes: list[str]) -> S.NeuronSpec:
    """``tmpl`` with the graph's decay and threshold. ``keep``: the template's formats as they
    are (and its ``tau`` where it gives the graph's ``d``, as our own export's spec does)."""
    if keep:
        same = abs(tmpl.alpha.value - lif.decay) < TOLERANCE
        return dataclasses.replace(tmpl, tau=tmpl.tau if same else _tau_for(lif.decay), threshold=lif.threshold)
    fmt, tau = _choose_decay(tmpl.decay, lif.decay, lif.node, notes)
    leak = "multiply" if lif.decay >= 1.0 else tmpl.leak  # no shift form 1 - 2**-k is 1
    return dataclasses.replace(tmpl, tau=tau, threshold=lif.threshold, decay=fmt, leak=leak)


def _finer_potential(neuron: S.NeuronSpec, accumulator: int, weight: S.FixedFormat) -> tuple[S.NeuronSpec, int]:
    """The potential with :data:`GUARD_BITS` fraction bits beyond the weights' (integer bits
    kept), and the accumulator as many bits wider: each step's input current is rounded into
    the potential once, so this keeps the fixed point close to the source's floats."""
    extra = max(0, weight.frac + GUARD_BITS - neuron.potential.frac)
    pot = dataclasses.replace(neuron.potential, width=neuron.potential.width + extra, frac=neuron.potential.frac + extra)
    return dataclasses.replace(neuron, potential=pot), accumulator + extra


def _with_learning_rate(base: S.NetworkSpec, notes: list[str], **fields) -> S.NetworkSpec:
    """``base`` with ``fields``; where the chosen formats do not allow the base's learning-rate
    shift, the nearest one they allow (noted)."""
    try:
        return dataclasses.replace(base, **fields)
    except SpecError as err:
        if "lr_shift" not in str(err):
            raise
    lr = base.learning.lr_shift
    for k in sorted(range(0, 64), key=lambda k: (abs(k - lr), k)):
        try:
            spec = dataclasses.replace(base, learning=dataclasses.replace(base.learning, lr_shift=k), **fields)
        except SpecError:
            continue
        notes.append(f"learning.lr_shift {lr} is out of range for the chosen formats: {k}, the nearest they allow (a learning rate 2^{lr - k} times the base's)")
        return spec
    return dataclasses.replace(base, **fields)  # raises the base's SpecError


def _tau_for(d: float) -> float:
    """The spec's ``tau`` for the decay ``d`` (``d = exp(-1/tau)``, rounded into the decay format)."""
    if d >= 1.0:
        return IF_TAU
    return -1.0 / math.log(d) if d > 0 else 1e-3


def read_nir(path: str | Path, **kw) -> Imported:
    """:func:`from_graph` of the NIR file ``path``."""
    nir = _nir()
    p = Path(path)
    if not p.is_file():
        raise LocalsnnError(f"{p}: no such NIR file")
    try:
        graph = nir.read(str(p))
    except Exception as err:  # h5py's and nir's own errors: not a NIR file
        raise LocalsnnError(f"{p}: not a NIR file that the nir package reads ({type(err).__name__}: {err})") from None
    return from_graph(graph, **kw)


def import_nir(path: str | Path, out: str | Path, **kw) -> Imported:
    """:func:`read_nir`, then ``out/spec.toml`` and ``out/weights.npz`` (golden's parameters)."""
    net = read_nir(path, **kw)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.toml").write_text(S.dumps(net.spec))
    save_params(net.params, out / "weights.npz", net.spec)
    return net


__all__ = ["BASE", "DT", "RESET", "Imported", "NIRError", "from_graph", "import_nir", "read_nir", "to_graph", "write_nir"]
