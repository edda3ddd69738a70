"""Train a small snnTorch network on scikit-learn's 8x8 digits and write it as a NIR graph, for
``localsnn nir import`` (the walkthrough in docs/nir.md).

    python3 docs/examples/snntorch_digits.py digits_snn.nir [EPOCHS]

The net is what localsnn's chip runs: ``Linear(bias=False) -> Leaky`` twice, each Leaky with
``reset_mechanism="subtract"`` and ``reset_delay=False`` (our LIF, Ma et al. eq. 2-3), its beta
and threshold given per neuron (so that snnTorch's exporter writes the LIF nodes with their
sizes), beta 0.875 (a multiple of 2^-8: exact in the digits spec's decay format). The input is
localsnn's direct code of the digits spec: each pixel ``p`` (0..16) as the current
``round(256 p / 16) / 256`` at every one of the ``T = 10`` steps; the split is localsnn's.
"""

from __future__ import annotations

import sys

import nir
import numpy as np
import snntorch as snn
import snntorch.utils
import torch
from snntorch.export_nir import export_to_nir

from localsnn import data

T, HIDDEN, CLASSES, BETA, EPOCHS = 10, 32, 10, 0.875, 8


def currents(pixels: np.ndarray, max_value: int) -> torch.Tensor:
    """``[T, B, 64]``: the digits spec's u8.8 direct code (round half up, as golden quantizes)."""
    k = (2 * (pixels.astype(np.int64) << 8) + max_value) // (2 * max_value)
    return torch.as_tensor(k / 256.0, dtype=torch.float32).unsqueeze(0).expand(T, -1, -1)


def leaky(n: int, output: bool = False) -> snn.Leaky:
    return snn.Leaky(beta=torch.full((n,), BETA), threshold=torch.ones(n), reset_mechanism="subtract", reset_delay=False, init_hidden=True, output=output)


def counts(net: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Output spike counts ``[B, classes]`` over the T steps."""
    snntorch.utils.reset(net)
    total = 0
    for t in range(x.shape[0]):
        spikes, _ = net(x[t])
        total = total + spikes
    return total


def main(out: str, epochs: int = EPOCHS) -> None:
    ds = data.load("digits")
    x_train, x_test = currents(ds.x_train, ds.max_value), currents(ds.x_test, ds.max_value)
    y_train, y_test = torch.as_tensor(ds.y_train), torch.as_tensor(ds.y_test)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN, bias=False), leaky(HIDDEN), torch.nn.Linear(HIDDEN, CLASSES, bias=False), leaky(CLASSES, output=True))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for epoch in range(epochs):
        order = torch.randperm(len(y_train))
        for start in range(0, len(order), 32):
            b = order[start : start + 32]
            c = counts(net, x_train[:, b])
            loss = torch.nn.functional.cross_entropy(c, y_train[b])  # spike counts as logits
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = (counts(net, x_test).argmax(1) == y_test).float().mean()
        print(f"epoch {epoch + 1}: test accuracy {100 * float(acc):.1f}%")
    graph = export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0])
    nir.write(out, graph)
    print(f"wrote {out}: {len(graph.nodes)} nodes ({', '.join(type(n).__name__ for n in graph.nodes.values())})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "digits_snn.nir", int(sys.argv[2]) if len(sys.argv) > 2 else EPOCHS)
