"""Editable velocity curve: a preset's [velocity] points define the engine's MIDI velocity
-> hammer speed table; a faster hammer at the same MIDI velocity is louder and brighter.

Oracles: the table against log-linear interpolation computed here; on renders, level and
spectral centroid (Bank et al. §3: a faster hammer compresses the felt more, F = K dy^p with
p > 1, so the contact is shorter and the spectrum richer).
"""
import math

import numpy as np
import pytest

from pianosynth import analysis as A
from pianosynth.cli import main
from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events
from pianosynth.engine.params import VELOCITY_CURVES, velocity_table_from_points
from pianosynth.presets import Preset, load_preset, save_preset

FS = 44100
FAST_AT_64 = [[1, 0.4], [64, 3.0], [127, 5.0]]


def test_table_is_log_linear_between_points_and_held_outside():
    t = velocity_table_from_points([(10, 0.5), (100, 4.5)])
    assert t.shape == (128,) and t[0] == t[1] == t[10] == pytest.approx(0.5)
    assert t[127] == pytest.approx(4.5)
    assert t[55] == pytest.approx(math.sqrt(0.5 * 4.5))            # midway in log speed
    assert np.all(np.diff(t) >= 0)
    # "normal" is the parameter table's default map; "soft" strikes harder, "hard" softer
    default = Engine(None, FS).keys.vel_m_s
    np.testing.assert_allclose(velocity_table_from_points(VELOCITY_CURVES["normal"])[1:],
                               default[1:], rtol=1e-12)
    assert velocity_table_from_points(VELOCITY_CURVES["soft"])[64] > default[64] > \
        velocity_table_from_points(VELOCITY_CURVES["hard"])[64]


def test_engine_uses_points_and_keeps_them_through_redesigns():
    eng = Engine(None, FS, velocity_points=FAST_AT_64)
    assert eng.keys.vel_m_s[64] == pytest.approx(3.0)
    eng.set_param("t60_scale", 0.9)                           # a "note" parameter redesigns
    assert eng.keys.vel_m_s[64] == pytest.approx(3.0)
    eng.retune_keys({69: 441.0})
    assert eng.keys.vel_m_s[64] == pytest.approx(3.0)
    eng.set_velocity_points(None)
    assert eng.keys.vel_m_s[64] == pytest.approx(0.4 * 12.5 ** 0.5)
    with pytest.raises(ValueError, match="must not fall"):
        Engine(None, FS, velocity_points=[(1, 2.0), (127, 1.0)])


def test_faster_curve_at_64_is_louder_and_brighter(tmp_path):
    """C4 at MIDI velocity 64 from a preset whose curve gives 3.0 m/s there (default: 1.41
    m/s): higher level and higher attack spectral centroid."""
    path = save_preset(Preset(name="fast", velocity={"points": FAST_AT_64}),
                       tmp_path / "fast.toml")
    pre = load_preset(path)
    out = {}
    for label, points in (("default", None), ("fast", pre.velocity_points())):
        eng = Engine(None, FS, velocity_points=points)
        y = eng.render_frames(int(1.0 * FS), make_events([(0, 0x90, 60, 64)]))[:, 0]
        out[label] = (A.level_db(y, FS), A.spectral_centroid(y, FS))
    print(f"C4 velocity 64: default curve {out['default'][0]:.1f} dB, centroid "
          f"{out['default'][1]:.0f} Hz; fast curve {out['fast'][0]:.1f} dB, centroid "
          f"{out['fast'][1]:.0f} Hz")
    assert out["fast"][0] > out["default"][0] + 3.0
    assert out["fast"][1] > 1.1 * out["default"][1]


def test_cli_note_uses_the_preset_curve(tmp_path, capsys):
    import soundfile as sf
    fast = save_preset(Preset(name="fast", velocity={"curve": "soft"}), tmp_path / "f.toml")
    peaks = {}
    for label, extra in (("default", []), ("soft", ["--preset", str(fast)])):
        out = tmp_path / f"{label}.wav"
        assert main(["note", "C4", "--velocity", "50", "--duration", "0.3", "--tail", "0",
                     "-q", "--quality", "eco", "-o", str(out), *extra]) == 0
        peaks[label] = float(np.max(np.abs(sf.read(out)[0])))
    assert peaks["soft"] > 1.4 * peaks["default"], peaks
