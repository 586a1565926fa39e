"""Errors that reach the user as one clear line and an exit code, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or settings (bad file, missing column, unreachable endpoint, wrong key).

    The CLI prints ``error: <message>`` and exits with :attr:`exit_code` (2 by default).
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
