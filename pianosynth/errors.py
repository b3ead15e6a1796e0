"""User-facing errors.

A :class:`PianosynthError` carries one clear line for the user: what was wrong, where
(file, line, key, parameter) and what is allowed. The command line prints it as
``pianosynth: error: <message>`` and exits with status 2, without a traceback. Any other
exception that escapes is a bug and keeps its traceback.
"""


class PianosynthError(Exception):
    """Bad input or environment, explained in one line (no traceback shown to the user)."""
