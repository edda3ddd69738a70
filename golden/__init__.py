"""The bit-accurate fixed-point golden model: the specification of the hardware.

Integers only (numpy and Python ``int``); see :mod:`localsnn.golden.model` for the equations.

    from localsnn import spec
    from localsnn.golden import Golden
    g = Golden(spec.load("digits"))
    record = g.run_sample(x, label)      # one sample, every step, learning on
    counts = g.infer(X)                  # (layers, batch, classes), learning off
"""

from localsnn.golden.lfsr import LFSR
from localsnn.golden.model import COUNTERS, Golden, LayerRecord, SampleRecord
from localsnn.golden.params import LayerParams, Params, init_params, load_params, save_params

__all__ = [
    "COUNTERS",
    "Golden",
    "LFSR",
    "LayerParams",
    "LayerRecord",
    "Params",
    "SampleRecord",
    "init_params",
    "load_params",
    "save_params",
]
