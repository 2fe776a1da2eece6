"""The agent's two errors: a bad request (exit 2, nothing done) and a failed action."""

from __future__ import annotations


class FaultInputError(ValueError):
    """A fault request is malformed; the message names the parameter."""


class FaultFailed(RuntimeError):
    """A fault could not be applied or undone."""
