"""Errors that localsnn raises on purpose.

Every error a user can cause (a bad spec, a bad file, a missing tool) is one of these, with a
message that says what was wrong and what is allowed or what to do. The CLI prints the message
and exits with status 2; it never shows a traceback for them.
"""

from __future__ import annotations


class LocalsnnError(Exception):
    """Base class of every error localsnn raises on purpose."""


class SpecError(LocalsnnError, ValueError):
    """A network spec, or a TOML file holding one, is invalid.

    ``field`` is the dotted path of the offending field (``layers[0].neuron.tau``), ``detail``
    says what the value was and what is allowed. ``str(error)`` is ``"<field>: <detail>"``.
    """

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{field}: {detail}" if field else detail)

    def under(self, prefix: str) -> "SpecError":
        """The same error seen from a containing object whose field is ``prefix``."""
        if not prefix:
            return self
        if not self.field:
            return SpecError(prefix, self.detail)
        sep = "" if self.field.startswith("[") else "."
        return SpecError(f"{prefix}{sep}{self.field}", self.detail)


class DatasetError(LocalsnnError):
    """A dataset could not be found, fetched, verified or parsed.

    The message says which file or tool was at fault and what to do about it.
    """


class WeightsError(LocalsnnError, ValueError):
    """A weights file does not match the spec it is loaded for."""


class BadValueError(LocalsnnError, ValueError):
    """A value given to localsnn's library (an argument, a sample, a setting derived from a spec
    or a board) is outside what is allowed; the message says what was given and what is."""


class UnknownNameError(LocalsnnError, KeyError):
    """A name (a rule, a memory, a stream) that localsnn does not know; the message lists the
    known ones. ``str()`` is the message itself, not KeyError's quoted repr."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
