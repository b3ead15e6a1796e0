"""``python -m pianosynth``: the command line, see :mod:`pianosynth.cli`."""
from .cli import main

raise SystemExit(main())
