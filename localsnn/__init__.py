"""localsnn: spiking neural networks that learn on chip, from spec to FPGA.

The package is one import package with sub-packages that follow the pipeline
(DESIGN.md): :mod:`localsnn.spec` (what the network is), :mod:`localsnn.golden` (the
bit-accurate fixed-point model that *is* the hardware's specification), :mod:`localsnn.data`
(datasets), and the CLI in :mod:`localsnn.cli`.
"""

from localsnn.errors import DatasetError, LocalsnnError, SpecError, WeightsError

__version__ = "0.1.0"

__all__ = ["DatasetError", "LocalsnnError", "SpecError", "WeightsError", "__version__"]
