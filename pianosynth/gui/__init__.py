"""``pianosynth gui``: the control panel (PySide6 + pyqtgraph).

The command line imports this package lazily and calls :func:`add_gui_arguments` and
:func:`cmd_gui`. Importing it needs PySide6 and pyqtgraph (the ``gui`` extra), so a missing
one is reported by the command line as a missing package rather than a traceback.
"""
import PySide6  # noqa: F401 - fail at import time when the GUI extra is missing
import pyqtgraph  # noqa: F401

from .app import add_gui_arguments, binding_problem, cmd_gui


__all__ = ["add_gui_arguments", "cmd_gui", "binding_problem"]
