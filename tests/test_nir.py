"""NIR in and out (``localsnn.nir_io``, docs/nir.md), against the libraries that write and read
it: snnTorch's exporter and importer, Norse's importer, the ``nir`` package's files.

Spike for spike: snnTorch's ``Leaky(reset_mechanism="subtract", reset_delay=False)`` is our
LIF (Ma eq. 2-3) while no potential reaches twice the threshold (above it snnTorch subtracts the
threshold twice in one step), so the inputs of those comparisons are small enough, and each test
checks that they were. Both sides run in float64, so that no threshold comparison depends on the
order of float32 operations.
"""

from __future__ import annotations

import re

import nir
import numpy as np
import pytest
import snntorch as snn
import snntorch.utils
import torch
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

from localsnn import nir_io
from localsnn import spec as S
from localsnn.golden import Golden
from localsnn.golden.params import init_params
from localsnn.golden.quantize import to_params
from localsnn.sim.configs import matrix_spec
from localsnn.train import registry

#: the snnTorch net of the import test: sizes, and per LIF layer its beta, threshold and the
#: scale ``a`` of its weights, uniform on ``[-a, 3a]`` (positive on the whole, so that every
#: layer fires while the small inputs keep every potential below twice the threshold)
SIZES = (16, 24, 16, 4)
BETAS = (0.875, 0.75, 0.9375)
THRESHOLDS = (1.0, 1.0, 1.0)
SCALES = (0.08, 0.04, 0.05)
T = 12


def _snntorch_net(seed: int = 0) -> torch.nn.Sequential:
    """Linear -> Leaky, three times, no biases: per-neuron beta and threshold tensors, so that
    snnTorch's exporter gives the LIF nodes their shapes."""
    gen = torch.Generator().manual_seed(seed)
    mods = []
    for i, (beta, theta, a) in enumerate(zip(BETAS, THRESHOLDS, SCALES)):
        n = SIZES[i + 1]
        lin = torch.nn.Linear(SIZES[i], n, bias=False)
        with torch.no_grad():
            lin.weight.copy_(a * (4 * torch.rand(lin.weight.shape, generator=gen) - 1))
        mods += [lin, snn.Leaky(beta=torch.full((n,), beta), threshold=torch.full((n,), theta), init_hidden=True,
                                reset_mechanism="subtract", reset_delay=False, output=i == len(BETAS) - 1)]
    return torch.nn.Sequential(*mods)


def _float64(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in float64; snnTorch's spikes come out float32 whatever the state's type, so each
    Linear casts its input."""
    net = net.double()
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_pre_hook(lambda mod, args: tuple(a.double() for a in args))
    return net


def _snntorch_spikes(net: torch.nn.Sequential, x: torch.Tensor):
    """Every Leaky's spikes ``[T, B, n]`` and its potentials before the reset, step by step."""
    snntorch.utils.reset(net)
    leaky = [m for m in net if isinstance(m, snn.Leaky)]
    spikes, before = [[] for _ in leaky], [[] for _ in leaky]
    for t in range(x.shape[0]):
        h = x[t]
        for m in net:
            h = m(h)
            h = h[0] if isinstance(h, tuple) else h
            if isinstance(m, snn.Leaky):
                k = leaky.index(m)
                spikes[k].append(h.double())
                before[k].append(m.mem.double() + h.double() * m.threshold.double())  # mem is after the reset
    return [torch.stack(s) for s in spikes], [torch.stack(b) for b in before]


def _our_float(spec: S.NetworkSpec, weights) -> torch.nn.Module:
    learner = registry.build("ell", spec).double()
    learner.load_float_weights([{k: torch.as_tensor(v) for k, v in w.items()} for w in weights])
    return learner


def _grid_inputs(batch: int, inputs: int, peak: float, seed: int, steps: int = T) -> tuple[torch.Tensor, np.ndarray]:
    """Input currents on the spec's pixel grid (u8.8: k / 256), constant over the T steps
    (direct code): ``(x [T, B, inputs] float64, the integer pixels [B, inputs])``."""
    k = np.random.default_rng(seed).integers(0, int(peak * 256), size=(batch, inputs))
    x = torch.as_tensor(np.ldexp(k.astype(np.float64), -8))
    return x.unsqueeze(0).expand(steps, -1, -1).contiguous(), k


def test_an_snntorch_net_imports_with_the_same_spikes_and_golden_agrees():
    """snnTorch net -> snnTorch's NIR export -> ``from_graph`` -> our float model: the same
    spikes in every layer at every step; golden's fixed point (weights quantized into the chosen
    formats) decides as the float model on at least 98 % of 300 samples."""
    net = _snntorch_net()
    graph = export_to_nir(net, torch.randn(1, SIZES[0]), ignore_dims=[0])
    imp = nir_io.from_graph(graph, timesteps=T)
    spec = imp.spec
    assert [spec.inputs, *(ls.size for ls in spec.layers), spec.classes] == list(SIZES)
    assert [ls.neuron.alpha.value for ls in spec.layers] + [spec.layers[-1].classifier.neuron.alpha.value] == list(BETAS)
    assert [ls.neuron.threshold for ls in spec.layers] + [spec.layers[-1].classifier.neuron.threshold] == list(THRESHOLDS)
    assert "read as a reset by subtraction" in imp.notes[0] and any("no classifier in the graph" in n for n in imp.notes)
    assert all(r.saturated == 0 for r in imp.report)

    x, _ = _grid_inputs(300, SIZES[0], 0.6, seed=1)
    with torch.no_grad():
        theirs, before = _snntorch_spikes(_float64(net), x)
    learner = _our_float(spec, imp.weights)
    rec = learner.record(x)
    ours = [rec[0]["o"], rec[1]["o"], rec[1]["oa"]]
    for k, (a, b) in enumerate(zip(theirs, ours)):
        assert float(before[k].max()) < 2 * THRESHOLDS[k], f"layer {k}: a potential reached twice the threshold (the premise)"
        assert int(a.sum()) > 500, f"layer {k}: too few spikes ({int(a.sum())}) for a comparison"
        assert torch.equal(a, b), f"layer {k}: {int((a != b).sum())} spikes differ"

    # golden against the float model: inputs over the whole pixel range (the premise is
    # snnTorch's, not golden's), nearly every sample with output spikes
    x, pixels = _grid_inputs(300, SIZES[0], 1.0, seed=4)
    counts = learner.record(x)[1]["oa"].sum(0)
    assert float((counts.sum(1) > 0).double().mean()) > 0.95
    golden = Golden(spec, imp.params)
    golden_decisions = np.array([golden.run_sample(pixels[b], None, learn=False).decision for b in range(len(pixels))])
    agree = float(np.mean(golden_decisions == counts.argmax(1).numpy()))
    assert agree >= 0.98, f"golden decides as the float model on {100 * agree:.1f}% of the samples"


def test_our_export_reads_into_snntorch_and_norse_with_the_same_spikes(tmp_path):
    """The shipped digits net -> ``write_nir`` -> file -> snnTorch's ``import_from_nir`` (then
    ``reset_mechanism = "subtract"``) and Norse's ``from_nir(dt=...)`` (then ``reset_subtract``):
    the same classifier spikes as our float model at every step."""
    import norse.torch as norse
    from norse.torch.functional.reset import reset_subtract

    spec = S.load("digits")
    rng = np.random.default_rng(5)  # weights positive on the whole, classifier weights about 0:
    weights = [{"w": 0.05 * (4 * rng.random((64, 64)) - 1), "clf_w": 0.11 * (2.4 * rng.random((64, 10)) - 1)}]  # every layer fires
    params, _ = to_params(spec, weights)
    nir_io.write_nir(spec, tmp_path / "digits.nir", params)
    graph = nir.read(str(tmp_path / "digits.nir"))
    ls = spec.layers[0]
    weights = [{"w": np.ldexp(params.layers[0].w.astype(float), -ls.weight.frac), "clf_w": np.ldexp(params.layers[0].clf_w.astype(float), -ls.classifier.weight.frac)}]
    x, _ = _grid_inputs(64, spec.inputs, 0.4, seed=2, steps=spec.timesteps)
    rec = _our_float(spec, weights).record(x)
    assert float(rec[0]["u"].max()) < 2 * ls.neuron.threshold and float(rec[0]["ua"].max()) < 2 * ls.classifier.neuron.threshold
    assert int(rec[0]["o"].sum()) > 1000 and int(rec[0]["oa"].sum()) > 50

    def run(module):
        state, out = None, []
        for t in range(spec.timesteps):
            o, state = module(x[t], state)
            out.append(o.double())
        return torch.stack(out)

    sn = import_from_nir(graph)
    for m in sn.modules():
        if isinstance(m, snn.Leaky):
            m.reset_mechanism = "subtract"
    assert torch.equal(run(_float64(sn)), rec[0]["oa"])
    nr = norse.from_nir(graph, dt=nir_io.DT)
    for m in nr.modules():
        if hasattr(m, "p") and hasattr(m.p, "reset_method"):
            m.p = m.p._replace(reset_method=reset_subtract)
    assert torch.equal(run(nr.double()), rec[0]["oa"])


def test_our_export_imports_back_exactly(tmp_path):
    """A two-layer FELL net with drawn weights -> file -> ``read_nir``: the same spec (every
    format, from the graph's metadata) and the same integers."""
    spec = matrix_spec("fell", "rate", "two")
    rng = np.random.default_rng(3)
    params = init_params(spec)
    for lp, ls in zip(params.layers, spec.layers):
        lp.w[...] = rng.integers(ls.weight.min_int, ls.weight.max_int + 1, size=lp.w.shape)
    nir_io.write_nir(spec, tmp_path / "two.nir", params)
    back = nir_io.read_nir(tmp_path / "two.nir")
    assert back.spec == spec and back.notes == []
    for a, b in zip(back.params.layers, params.layers):
        assert np.array_equal(a.w, b.w) and np.array_equal(a.clf_w, b.clf_w)


def test_if_neurons_are_lifs_without_leak_both_ways(tmp_path):
    """NIR's IF as Norse writes and reads it (``v[t] = v[t-1] + r I[t]``: its IAFCell adds the
    input without ``dt``): a Norse net of Linear -> IAFCell layers -> Norse's ``to_nir`` (Affine
    nodes with zero bias, IF nodes with scalar parameters) -> ``from_graph``: LIF layers with
    ``d = 1`` exactly (a decay format with an integer bit), whose float model gives the spikes of
    that equation with a reset by subtraction, simulated here directly. Our export of ``d = 1``
    writes IF nodes with the weights as they are, which read back exactly, and into Norse as
    IAFCells of our thresholds behind our weights."""
    import norse.torch as norse

    torch.manual_seed(0)
    src = norse.SequentialState(torch.nn.Linear(16, 12, bias=False), norse.IAFCell(), torch.nn.Linear(12, 4, bias=False), norse.IAFCell())
    with torch.no_grad():
        src[0].weight.mul_(0.5).add_(0.05)
    imp = nir_io.from_graph(norse.to_nir(src, torch.zeros(1, 16)))
    assert "IF nodes '1', '3': no reset in their metadata" in imp.notes[0]
    for n in (imp.spec.layers[0].neuron, imp.spec.layers[0].classifier.neuron):
        assert n.alpha.value == 1.0 and n.decay.frac < n.decay.width and n.threshold == 1.0
    x, _ = _grid_inputs(32, 16, 0.5, seed=4, steps=imp.spec.timesteps)
    rec = _our_float(imp.spec, imp.weights).record(x)
    w, cw = (torch.as_tensor(imp.weights[0][k]) for k in ("w", "clf_w"))
    for W, got in ((w, rec[0]["o"]), (cw, rec[0]["oa"])):
        u = torch.zeros(x.shape[1], W.shape[1], dtype=torch.float64)
        o = torch.zeros_like(u)
        want = []
        for t in range(x.shape[0]):
            u = u - o + x[t] @ W  # d = 1, theta = 1: u[t] = u[t-1] - theta o[t-1] + I[t]
            o = (u >= 1.0).double()
            want.append(o)
        assert torch.equal(got, torch.stack(want))
        x = got
    assert int(rec[0]["o"].sum()) > 100 and int(rec[0]["oa"].sum()) > 10
    nir_io.write_nir(imp.spec, tmp_path / "if.nir", imp.params)
    graph = nir.read(str(tmp_path / "if.nir"))
    assert type(graph.nodes["layer0"]).__name__ == type(graph.nodes["layer0.clf"]).__name__ == "IF"
    back = nir_io.read_nir(tmp_path / "if.nir")
    assert back.spec == imp.spec and back.notes == []
    assert all(np.array_equal(a, b) for a, b in zip((back.params.layers[0].w, back.params.layers[0].clf_w), (imp.params.layers[0].w, imp.params.layers[0].clf_w)))
    nr = norse.from_nir(graph)
    cells = [m for m in nr.modules() if isinstance(m, norse.IAFCell)]
    linears = [m for m in nr.modules() if isinstance(m, torch.nn.Linear)]
    assert len(cells) == len(linears) == 2 and all(float(c.p.v_th.max()) == 1.0 for c in cells)
    ls = imp.spec.layers[0]
    ours = (np.ldexp(imp.params.layers[0].w.astype(float), -ls.weight.frac), np.ldexp(imp.params.layers[0].clf_w.astype(float), -ls.classifier.weight.frac))
    got = {tuple(lin.weight.shape): lin.weight.detach().double().numpy() for lin in linears}  # (out, in)
    for wo in ours:
        assert np.allclose(got[wo.T.shape], wo.T, rtol=0, atol=1e-7)


def _graph_of(spec_name: str = "digits"):
    return nir_io.to_graph(S.load(spec_name))


def _mutate(what: str):
    g = _graph_of()
    lif = g.nodes["layer0"]
    n = lif.tau.size
    if what == "v_leak":
        lif.v_leak = np.full(n, 0.1)
    elif what == "v_reset":
        lif.v_reset = np.full(n, 0.2)
    elif what == "hard reset":
        lif.metadata["reset"] = "zero"
    elif what == "tau":
        lif.tau = np.linspace(1e-4, 1e-3, n)
    elif what == "v_threshold":
        lif.v_threshold = np.linspace(0.5, 1.0, n)
    elif what == "bias":
        w = g.nodes["layer0.w"].weight
        g.nodes["layer0.w"] = nir.Affine(weight=w, bias=np.full(w.shape[0], 0.5))
    elif what == "Conv2d":
        g.nodes["layer0.w"] = nir.Conv2d(input_shape=(8, 8), weight=np.ones((2, 1, 3, 3)), stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(2))
    elif what == "recurrent":
        g.nodes["layer0.rec"] = nir.Linear(weight=np.eye(n))
        g.edges += [("layer0", "layer0.rec"), ("layer0.rec", "layer0")]
    elif what == "tau < dt":
        lif.tau = np.full(n, 1e-5)
    return g


#: how each graph is refused: the node and the parameter named
REFUSED = {
    "v_leak": "node 'layer0': v_leak",
    "v_reset": "node 'layer0': v_reset",
    "hard reset": "node 'layer0': metadata reset = 'zero': a hard reset",
    "tau": "node 'layer0': tau differs between the neurons",
    "v_threshold": "node 'layer0': v_threshold differs between the neurons",
    "bias": "node 'layer0.w': bias",
    "Conv2d": "node 'layer0.w': Conv2d is not supported: the chip has fully connected layers only",
    "recurrent": "node 'layer0' has 2 inputs",
    "tau < dt": "node 'layer0': tau = 1e-05 is shorter than the step dt = 0.0001",
}


@pytest.mark.parametrize("what", list(REFUSED))
def test_what_would_change_the_dynamics_is_refused_by_node_and_parameter(what):
    with pytest.raises(nir_io.NIRError, match="^" + re.escape(REFUSED[what])):
        nir_io.from_graph(_mutate(what))


def test_decolle_nets_are_refused_on_export():
    with pytest.raises(nir_io.NIRError, match="layer 0: 'decolle' neurons with a 'random' readout have no NIR node"):
        nir_io.to_graph(S.load("digits-decolle"))


def test_the_command_line_exports_and_imports(tmp_path, capsys):
    from localsnn import cli

    assert cli.main(["nir", "export", "--config", "digits", "-o", str(tmp_path / "d.nir")]) == 0
    assert "6 nodes, 5 edges" in capsys.readouterr().out
    assert cli.main(["nir", "import", str(tmp_path / "d.nir"), "-o", str(tmp_path / "imp")]) == 0
    out = capsys.readouterr().out
    assert "digits-ell: 64-64-10" in out and "saturated 0 (0.00%)" in out
    assert S.load(tmp_path / "imp" / "spec.toml") == S.load("digits")
    assert cli.main(["spec", "check", str(tmp_path / "imp" / "spec.toml")]) == 0
    (tmp_path / "bad.nir").write_text("not HDF5")
    assert cli.main(["nir", "import", str(tmp_path / "bad.nir"), "-o", str(tmp_path / "x")]) == 2
    assert "not a NIR file that the nir package reads" in capsys.readouterr().err


def test_an_imported_snntorch_net_on_chip_equals_golden():
    """The imported net of the first test (its chosen formats: potentials of 24 bits), learning
    on, two samples: the RTL equals golden after every step."""
    from localsnn.sim.cosim import cosimulate
    from localsnn.sim.runner import ToolchainMissing, VerilatorNotFound, verilator_env

    try:
        verilator_env()
    except (VerilatorNotFound, ToolchainMissing) as err:  # only where it truly is missing (the test extra installs it)
        pytest.skip(str(err))
    imp = nir_io.from_graph(export_to_nir(_snntorch_net(), torch.randn(1, SIZES[0]), ignore_dims=[0]), timesteps=6)
    _, pixels = _grid_inputs(2, SIZES[0], 1.0, seed=6)
    report = cosimulate(imp.spec, [(pixels[0], 1), (pixels[1], 3)], lanes=2, params=imp.params)
    assert report.samples == 2 and report.compared > 0


def test_the_walkthrough_script_writes_a_graph_that_imports(tmp_path, capsys):
    """docs/examples/snntorch_digits.py (one epoch) -> ``import_nir`` -> golden: the docs'
    walkthrough runs, and the imported net decides well above chance on the digits test set."""
    import importlib.util
    from pathlib import Path

    from localsnn import data

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "snntorch_digits.py"
    found = importlib.util.spec_from_file_location("snntorch_digits_example", path)
    example = importlib.util.module_from_spec(found)
    found.loader.exec_module(example)
    example.main(str(tmp_path / "d.nir"), epochs=1)
    assert "wrote" in capsys.readouterr().out
    net = nir_io.import_nir(tmp_path / "d.nir", tmp_path / "imp")
    assert [net.spec.inputs, net.spec.layers[0].size, net.spec.classes] == [64, example.HIDDEN, 10]
    ds = data.load("digits")
    golden = Golden(net.spec, net.params)
    x = golden.quantize(ds.x_test[:100], ds.max_value)
    acc = np.mean([golden.run_sample(x[k], None, learn=False).decision == ds.y_test[k] for k in range(100)])
    assert acc > 0.6, f"{100 * acc:.0f}% after one epoch"
