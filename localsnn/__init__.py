"""localsnn: spiking neural networks that learn on chip, from spec to FPGA.

The package is one import package with sub-packages that follow the pipeline
(DESIGN.md): :mod:`localsnn.spec` (what the network is), :mod:`localsnn.golden` (the
bit-accurate fixed-point model that *is* the hardware's specification), :mod:`localsnn.data`
(datasets), and the CLI in :mod:`localsnn.cli`.
"""

import importlib.util as _util

# The checkout's localsnn/ folder is not the whole package: its sub-packages (golden/, rtl/, ...)
# sit beside it, and an install maps them under localsnn (docs/architecture.md, "Packaging").
# Python finds that folder first when started in the repository root without an editable install.
if _util.find_spec("localsnn.golden") is None:
    raise ImportError(
        f"localsnn was imported from {__path__[0]} without its sub-packages (localsnn.golden, ...): "  # noqa: F821
        "the current directory is probably a checkout whose localsnn/ folder hides the installed package. "
        "Run Python outside the checkout's root, or with -P (python3 -P -m ...), with the package installed "
        "(python3 -m pip install -e .): docs/architecture.md, Packaging"
    )

from localsnn.errors import DatasetError, LocalsnnError, SpecError, WeightsError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["DatasetError", "LocalsnnError", "SpecError", "WeightsError", "__version__"]
