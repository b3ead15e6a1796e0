"""The default preset against the Yamaha C3 recordings (issue "Sound like a real grand").

Each recorded note and a render of the same key at the layer's velocity
(:data:`pianosynth.fit.LAYER_VELOCITY`, chosen by matching levels) are measured with the same
functions (:func:`pianosynth.fit.realism_measures`), and the bands of the issue are checked:
B within +-25 %, partial 1 within +-6 cents below C7, EDT within x1.5, C4 late/early T60 of
partial 1 >= 5, soft -> loud centroid ratio 1.5-2.7 (or +-20 % of the recording's) and level
range 12-25 dB. scripts/realism_report.py runs the same checks on all 27 notes and writes
docs/realism/; here every key is checked on tuning, B and soft -> loud, and a subset of
keys on the decay measures (renders as long as the recordings; the others 3.5 s, enough
for the partial search).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from pianosynth import analysis as A
from pianosynth import fit as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import realism_report as R  # noqa: E402

FS = 44100
DECAY_KEYS = (24, 48, 60, 84, 108)


@pytest.fixture(scope="module")
def measured(shared_data):
    """(recording, model) measures per (layer, key); decay measures only for DECAY_KEYS."""
    rec, mod = {}, {}
    for key in F.REALISM_KEYS:
        for layer in F.LAYERS:
            x, fs = A.load_audio(F.recording_path(layer, key, shared_data))
            n0 = A.detect_onset(x, fs)
            decay = key in DECAY_KEYS
            n = int(min((x.size - n0) / fs, R.MAX_RENDER_S if decay else 3.5) * fs)
            y = F.render_note({}, {}, key, F.LAYER_VELOCITY[layer], n, fs)
            rec[(layer, key)] = F.realism_measures(x if decay else x[:n0 + n], fs, key,
                                                   decay=decay)
            if decay:
                rec[(layer, key)]["decay_range_db"] = R.decay_range_db(x, fs)
            mod[(layer, key)] = F.realism_measures(y, fs, key, decay=decay)
    return rec, mod


@pytest.mark.parametrize("key", F.REALISM_KEYS)
def test_inharmonicity_and_stretch(measured, key):
    rec, mod = measured
    for layer in F.LAYERS:
        r, m = rec[(layer, key)], mod[(layer, key)]
        if np.isfinite(r["B"]):   # C7, C8: fewer than 3 partials inside the dispersion band
            assert abs(m["B"] / r["B"] - 1) <= R.B_TOL, (layer, r["B"], m["B"])
        if key < 96 and r["partial1_found"]:
            assert abs(m["stretch_cents"] - r["stretch_cents"]) <= R.STRETCH_TOL_CENTS, \
                (layer, r["stretch_cents"], m["stretch_cents"])


@pytest.mark.parametrize("key", F.REALISM_KEYS)
def test_soft_to_loud(measured, key):
    rec, mod = measured
    cr_m = mod[("L5", key)]["centroid_hz"] / mod[("L1", key)]["centroid_hz"]
    cr_r = rec[("L5", key)]["centroid_hz"] / rec[("L1", key)]["centroid_hz"]
    lo, hi = min(R.CENTROID_RATIO[0], 0.8 * cr_r), max(R.CENTROID_RATIO[1], 1.2 * cr_r)
    assert lo <= cr_m <= hi, (cr_r, cr_m)
    lr = mod[("L5", key)]["level_db"] - mod[("L1", key)]["level_db"]
    assert R.LEVEL_RANGE_DB[0] <= lr <= R.LEVEL_RANGE_DB[1], lr


def test_layer_velocities_match_levels(measured):
    """The documented velocities give each layer's mean level over the keys within 1 dB."""
    rec, mod = measured
    for layer in F.LAYERS:
        d = np.mean([mod[(layer, k)]["level_db"] - rec[(layer, k)]["level_db"]
                     for k in F.REALISM_KEYS])
        assert abs(d) < 1.0, (layer, d)


@pytest.mark.parametrize("key", DECAY_KEYS)
def test_early_decay_time(measured, key):
    rec, mod = measured
    for layer in F.LAYERS:
        r, m = rec[(layer, key)], mod[(layer, key)]
        if r["decay_range_db"] < R.MIN_EDT_RANGE_DB:      # C8 L1: sinks into the noise
            continue
        assert 1 / R.EDT_FACTOR <= m["edt_s"] / r["edt_s"] <= R.EDT_FACTOR, \
            (layer, r["edt_s"], m["edt_s"])


def test_two_stage_decay_at_C4(measured):
    rec, mod = measured
    for layer in F.LAYERS:
        m = mod[(layer, 60)]
        assert m["late_t60_s"] / m["early_t60_s"] >= R.TWO_STAGE_MIN, (layer, m)
