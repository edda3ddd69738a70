"""The package as a user runs it: one importable name per module (docs/architecture.md,
"Packaging"), ``python -m localsnn``, and a static checker that follows every import.

Subprocesses run in ``tmp_path``: a ``python -c``/``-m`` started in the checkout would put the
checkout's ``localsnn/`` folder first on ``sys.path`` and test that instead of the install.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import localsnn

SUBPACKAGES = ("golden", "rtl", "sim", "synth", "train")


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=False)


def test_python_m_localsnn_is_the_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "localsnn", "--version"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert localsnn.__version__ in out.stdout + out.stderr


@pytest.mark.parametrize("name", ["localsnn.localsnn", "localsnn.tests", "localsnn.docs", "localsnn.tools", "golden", "rtl"])
def test_no_second_name(name, tmp_path):
    """Only ``localsnn.<sub>``: the checkout's folders are not packages of their own inside it."""
    out = _run(f"import {name}", tmp_path)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr, (name, out.stdout, out.stderr)


def test_started_in_the_checkout_root_it_works_or_says_why():
    """Python started in the repository root finds the checkout's ``localsnn/`` folder first:
    either an editable install's import hook supplies the sub-packages, or the import stops
    with a message saying what happened and what to do (not a ModuleNotFoundError later)."""
    root = Path(__file__).resolve().parents[1]
    out = _run("import localsnn.golden.model", root)
    assert out.returncode == 0 or ("hides the installed package" in out.stderr and "-P" in out.stderr), out.stderr


def test_every_module_has_one_file_and_one_name(tmp_path):
    """Each sub-package is found where the install put it, under ``localsnn``'s own location
    (a wheel) or at the checkout's top-level folder (an editable install), never twice."""
    code = ("import json, localsnn, pkgutil, importlib\n"
            f"subs = {SUBPACKAGES!r}\n"
            "files = {}\n"
            "for sub in subs:\n"
            "    pkg = importlib.import_module('localsnn.' + sub)\n"
            "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
            "        files[m.name] = importlib.util.find_spec(m.name).origin\n"
            "print(json.dumps(files))\n")
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout)
    assert len(files) > 40
    origins = list(files.values())
    assert len(set(origins)) == len(origins)
    for sub in SUBPACKAGES:
        assert any(name.startswith(f"localsnn.{sub}.") for name in files), sub
    for name, origin in files.items():
        assert Path(origin).stem == name.rsplit(".", 1)[1], (name, origin)


def _static_root() -> Path | None:
    """The ``sys.path`` folder that holds ``localsnn/`` with its sub-packages as plain folders,
    where a static tool looks: site-packages for a wheel, the link tree of an editable install in
    ``strict`` mode; none for a ``lenient`` editable install (an import hook only)."""
    for entry in sys.path:
        root = Path(entry or ".").resolve()
        if all((root / "localsnn" / sub / "__init__.py").is_file() for sub in SUBPACKAGES):
            return root
    return None


def test_a_static_checker_resolves_every_localsnn_import(tmp_path):
    """mypy on the installed package: not one unresolved import of a module of ours.

    Only the resolution of imports is this test's business, not type errors; of the unresolved
    imports mypy reports, those of third-party modules without types are not ours (the filter
    below), any ``localsnn...`` one is a failure."""
    root = _static_root()
    if root is None:
        pytest.fail("localsnn is installed as an import hook only (an editable install in setuptools' default mode), "
                    "which static tools cannot follow: reinstall with "
                    "`python3 -m pip install -e . --config-settings editable_mode=strict` (docs/architecture.md, Packaging)")
    out = subprocess.run([sys.executable, "-m", "mypy", "-p", "localsnn", "--cache-dir", str(tmp_path / "cache"),
                          "--show-error-codes", "--no-error-summary"],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    report = out.stdout + out.stderr
    assert "Can't find package" not in report and "There are no .py" not in report, report
    ours = [line for line in report.splitlines()
            if re.search(r"\[(import-not-found|import-untyped|attr-defined)\]", line) and re.search(r'"localsnn[."]', line)]
    assert not ours, "\n".join(ours)
