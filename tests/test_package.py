"""The package as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import localsnn


def test_python_m_localsnn_is_the_command():
    out = subprocess.run([sys.executable, "-m", "localsnn", "--version"], capture_output=True, text=True, check=True)
    assert localsnn.__version__ in out.stdout + out.stderr
