"""localsnn.train: the spec's networks in floating-point PyTorch, with the learning rules of the
papers, for accuracy runs on a GPU (or, small, on the CPU), and the export of what they learn into
the golden model's fixed point.

Needs torch (``pip install "localsnn[train]"``); nothing else in localsnn imports this package.
Command line: ``localsnn train``, ``localsnn export``, ``localsnn bench train`` (docs/train.md).

Modules:

* :mod:`~localsnn.train.api`: the :class:`~localsnn.train.api.Learner` interface every rule
  implements (``train_step``, ``evaluate``, ``layer_names``) and
  :class:`~localsnn.train.api.RuleOptions`.
* :mod:`~localsnn.train.lif`, :mod:`~localsnn.train.layers`: LIF networks with spiking local
  classifiers (dense from a spec, convolutional from an architecture string such as
  ``12c5-p2-64c5-p2-10``) and the rules of Ma et al.: BPTT, ELL, BELL, FELL, FELL-KP.
* :mod:`~localsnn.train.decolle`: DECOLLE (Kaiser et al.).
* :mod:`~localsnn.train.tlbptt`: truncated local BPTT (Guo et al.).
* :mod:`~localsnn.train.registry`: rule name -> learner.
* :mod:`~localsnn.train.encode`: golden's input codes (direct, rate, latency) in torch.
* :mod:`~localsnn.train.loop`: the training loop (optimizer and schedule, per-layer accuracies,
  metrics, plots, atomic checkpoints, bit-exact resume).
* :mod:`~localsnn.train.export`: float weights -> golden's integers, float vs golden accuracy.
* :mod:`~localsnn.train.bench`: training throughput and memory of every rule against
  SpikingJelly and snnTorch.

The sub-modules are imported by name (``from localsnn.train import loop``); importing the
package itself loads nothing, not even torch.
"""
