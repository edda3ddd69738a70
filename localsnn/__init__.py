"""localsnn: spiking neural networks that learn on chip, from spec to FPGA.

The package is one import package with sub-packages that follow the pipeline
(DESIGN.md): :mod:`localsnn.spec` (what the network is), :mod:`localsnn.golden` (the
bit-accurate fixed-point model that *is* the hardware's specification), :mod:`localsnn.data`
(datasets), and the CLI in :mod:`localsnn.cli`.
"""

from pathlib import Path as _Path

# In a source checkout the sub-packages golden/, rtl/, sim/, synth/ and train/ sit beside this
# folder (DESIGN.md, "Layout"); an install maps them under localsnn. When this package is
# imported from the checkout itself (the current directory comes first on sys.path), let the
# import system find them there too.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "golden" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # type: ignore[name-defined]  # noqa: F821

from localsnn.errors import DatasetError, LocalsnnError, SpecError, WeightsError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["DatasetError", "LocalsnnError", "SpecError", "WeightsError", "__version__"]
