"""Shared fixtures: engines are expensive to design (about a second), so build one per rate."""
from pathlib import Path

import numpy as np
import pytest

from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

_ENGINES = {}


def get_engine(fs=44100, **settings):
    key = (fs, tuple(sorted(settings.items())))
    if key not in _ENGINES:
        _ENGINES[key] = Engine(settings or None, sample_rate=fs)
    eng = _ENGINES[key]
    eng.reset()
    return eng


def render_note(key, velocity=100, dur_s=2.0, fs=44100, release_s=None, engine=None,
                block_size=512, **settings):
    """Render one note on a fresh engine state -> mono float64 (left channel)."""
    eng = engine if engine is not None else get_engine(fs, **settings)
    eng.reset()
    rows = [(0, 0x90, key, velocity)]
    if release_s is not None:
        rows.append((int(release_s * fs), 0x80, key, 0))
    y = eng.render_frames(int(dur_s * fs), make_events(rows), block_size=block_size)
    return y[:, 0]


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA
