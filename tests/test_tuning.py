"""Tuning: temperaments, inharmonic stretch, Scala files, per-key overrides, MTS messages.

Oracles: published temperament tables (Barbour 1951), interval sizes from their ratios, the
stiff-string law (eq. 12) for octave matching, and rendered notes measured against targets
computed here independently of :mod:`pianosynth.design.tuning`.
"""
import math
from pathlib import Path

import numpy as np
import pytest

from pianosynth import analysis as A
from pianosynth.design import tuning as T
from pianosynth.design.keyboard import KEY_MIN, KEYS, design_keyboard
from pianosynth.engine.core import Engine
from pianosynth.engine.events import make_events
from pianosynth.errors import PianosynthError
from pianosynth.io import mts

TUNINGS = Path(__file__).resolve().parents[1] / "presets" / "tunings"
FS = 44100


def cents(ratio):
    return 1200.0 * math.log2(ratio)


# --------------------------------------------------------------------------- temperaments
#: cents above C of C, C#, D, ... B (Barbour 1951, "Tuning and Temperament")
PUBLISHED = {
    "werckmeister3": [0, 90.225, 192.180, 294.135, 390.225, 498.045, 588.270, 696.090,
                      792.180, 888.270, 996.090, 1092.180],
    "vallotti": [0, 94.135, 196.090, 298.045, 392.180, 501.955, 592.180, 698.045, 796.090,
                 894.135, 1000.000, 1090.225],
    "kirnberger3": [0, 90.225, 193.157, 294.135, 386.314, 498.045, 590.224, 696.578, 792.180,
                    889.735, 996.090, 1088.269],
    "quarter_comma_meantone": [0, 76.049, 193.157, 310.265, 386.314, 503.422, 579.471,
                               696.578, 772.627, 889.735, 1006.843, 1082.892],
    "just": [0, 111.731, 203.910, 315.641, 386.314, 498.045, 590.224, 701.955, 813.686,
             884.359, 1017.596, 1088.269],
    "equal": [100.0 * i for i in range(12)],
}


@pytest.mark.parametrize("name", T.TEMPERAMENTS)
def test_temperament_matches_published_table(name):
    got = T.temperament_cents(name) + 100.0 * np.arange(12)
    np.testing.assert_allclose(got, PUBLISHED[name], atol=6e-4)


def fifths(name):
    """The 12 fifths of the circle C-G-D-...-F-C in cents."""
    c = T.temperament_cents(name) + 100.0 * np.arange(12)
    pcs = [(7 * i) % 12 for i in range(13)]
    return np.array([(c[pcs[i + 1]] - c[pcs[i]]) % 1200.0 for i in range(12)])


def test_interval_sizes():
    pure = cents(1.5)
    qcm = fifths("quarter_comma_meantone")
    wolf = 8                                   # G#-Eb
    np.testing.assert_allclose(np.delete(qcm, wolf), 696.578, atol=5e-4)
    assert qcm[wolf] == pytest.approx(737.637, abs=1e-3)
    w3 = fifths("werckmeister3")              # C-G, G-D, D-A, B-F# a quarter comma narrow
    np.testing.assert_allclose(w3[[0, 1, 2, 5]], 696.090, atol=5e-4)
    np.testing.assert_allclose(np.delete(w3, [0, 1, 2, 5]), pure, atol=1e-9)
    np.testing.assert_allclose(fifths("vallotti")[[0, 1, 2, 3, 4, 11]], pure - 23.460 / 6,
                               atol=1e-3)
    assert np.sum(fifths("vallotti")) == pytest.approx(7 * 1200.0)
    just = T.temperament_cents("just") + 100.0 * np.arange(12)
    assert just[4] == pytest.approx(386.3137, abs=1e-4)            # 5/4
    assert cents(5 / 4) == pytest.approx(386.31, abs=0.005)
    assert just[7] == pytest.approx(pure)                          # 3/2
    kb3 = T.temperament_cents("kirnberger3") + 100.0 * np.arange(12)
    assert kb3[4] == pytest.approx(cents(5 / 4), abs=1e-9)         # pure C-E


def test_temperament_root_and_errors():
    w = T.temperament_cents("werckmeister3")
    on_g = T.temperament_cents("werckmeister3", root_key=67)        # built on G
    assert on_g[7] == 0.0
    np.testing.assert_allclose(on_g, np.roll(w, 7))
    np.testing.assert_allclose(T.temperament_cents("Werckmeister III", root_key=7), on_g)
    np.testing.assert_array_equal(T.temperament_cents("equal"), np.zeros(12))
    with pytest.raises(T.TuningError, match="unknown temperament 'pythagorean'"):
        T.temperament_cents("pythagorean")


# --------------------------------------------------------------------------- stretch
def test_railsback_stretch_matches_octaves_on_partials():
    kp = design_keyboard()
    b = kp.inharmonicity_b
    s = T.railsback_stretch_cents(b, kp.f0_hz)
    np.testing.assert_array_equal(s[58 - KEY_MIN:70 - KEY_MIN], 0.0)   # temperament octave
    f1 = 440.0 * 2.0 ** ((KEYS - 69) / 12.0) * 2.0 ** (s / 1200.0)
    f0 = f1 / np.sqrt(1.0 + b)
    for i in range(len(KEYS) - 12):
        lower = A.inharmonic_partials(f0[i], b[i], 2)
        upper = A.inharmonic_partials(f0[i + 12], b[i + 12], 1)
        assert cents(upper[0] / lower[1]) == pytest.approx(0.0, abs=1e-9), KEYS[i]
    # grows with B toward both ends: C8 sharp, A0 flat, monotone over octaves of A
    a_keys = s[np.arange(21, 109, 12) - KEY_MIN]
    assert np.all(np.diff(a_keys) > 0)
    assert s[-1] > 10.0 and s[0] < -1.0
    np.testing.assert_array_equal(T.railsback_stretch_cents(np.zeros(88)), 0.0)


def test_railsback_bass_partials():
    kp = design_keyboard()
    b = kp.inharmonicity_b
    s = T.railsback_stretch_cents(b, kp.f0_hz, bass_partials=(6, 3), bass_below_hz=100.0)
    f1 = 440.0 * 2.0 ** ((KEYS - 69) / 12.0) * 2.0 ** (s / 1200.0)
    f0 = f1 / np.sqrt(1.0 + b)
    i = 0                                                            # A0-A1 on 6:3
    p6 = A.inharmonic_partials(f0[i], b[i], 6)[5]
    p3 = A.inharmonic_partials(f0[i + 12], b[i + 12], 3)[2]
    assert cents(p6 / p3) == pytest.approx(0.0, abs=1e-9)
    assert s[0] < T.railsback_stretch_cents(b)[0] - 3.0               # wider bass octaves
    with pytest.raises(T.TuningError, match="octave"):
        T.railsback_stretch_cents(b, partials=(3, 1))
    with pytest.raises(T.TuningError, match="shape"):
        T.railsback_stretch_cents(b[:10])


# --------------------------------------------------------------------------- Scala files
def test_scl_12tet_and_kbm_reference():
    desc, c = T.read_scl(TUNINGS / "equal_12.scl")
    assert desc == "12-tone equal temperament"
    np.testing.assert_allclose(c, 100.0 * np.arange(1, 13))
    f = T.scala_key_frequencies(TUNINGS / "equal_12.scl", TUNINGS / "a440_c60.kbm")
    assert sorted(f) == list(range(21, 109))
    et = 440.0 * 2.0 ** ((np.arange(21, 109) - 69) / 12.0)
    np.testing.assert_allclose([f[k] for k in range(21, 109)], et, rtol=1e-12)
    # a linear (size 0) mapping with A4 = 415 Hz
    kbm = T.read_kbm(TUNINGS / "c60_a415.kbm")
    assert (kbm.size, kbm.reference_key, kbm.reference_hz) == (0, 69, 415.0)
    f = T.scala_key_frequencies(TUNINGS / "equal_12.scl", kbm)
    assert f[69] == pytest.approx(415.0) and f[57] == pytest.approx(207.5)


def test_scl_meantone_frequencies():
    desc, c = T.read_scl(TUNINGS / "meantone_quarter_comma.scl")
    assert desc.startswith("Quarter-comma meantone")
    assert len(c) == 12 and c[-1] == 1200.0
    assert c[3] == pytest.approx(cents(5 / 4))                     # "5/4" ratio line
    np.testing.assert_allclose(np.array(c[:11]),
                               PUBLISHED["quarter_comma_meantone"][1:], atol=1e-3)
    f = T.scala_key_frequencies(TUNINGS / "meantone_quarter_comma.scl",
                                TUNINGS / "a440_c60.kbm")
    c4 = 440.0 * 2.0 ** (-889.73529 / 1200.0)                       # A4 = 440, degree 9 = A
    assert f[69] == pytest.approx(440.0, rel=1e-12)
    assert f[60] == pytest.approx(c4, rel=1e-7)
    assert f[64] / f[60] == pytest.approx(1.25, rel=1e-12)         # pure third
    assert f[72] / f[60] == pytest.approx(2.0, rel=1e-12)
    assert f[67] / f[60] == pytest.approx(2.0 ** (696.57843 / 1200.0), rel=1e-8)
    assert f[21] == pytest.approx(440.0 / 16.0, rel=1e-12)         # A0, 4 octaves down
    # without a mapping file: degree 0 on C4, A4 at a4_hz
    g = T.scala_key_frequencies(TUNINGS / "meantone_quarter_comma.scl", a4_hz=442.0)
    assert g[69] == pytest.approx(442.0) and g[64] / g[60] == pytest.approx(1.25)


def test_kbm_seven_note_scale_on_white_keys():
    kbm = T.read_kbm(TUNINGS / "white_keys_7.kbm")
    assert kbm.mapping == (0, None, 1, None, 2, 3, None, 4, None, 5, None, 6)
    assert kbm.octave_degree == 7
    f = T.scala_key_frequencies(TUNINGS / "just_major_7.scl", kbm)
    assert 61 not in f and 70 not in f                               # black keys unmapped
    c4 = 440.0 * 3.0 / 5.0                                           # A = 5/3 above C
    for key, ratio in [(60, 1), (62, 9 / 8), (64, 5 / 4), (65, 4 / 3), (67, 3 / 2),
                       (69, 5 / 3), (71, 15 / 8), (72, 2), (48, 0.5), (81, 10 / 3)]:
        assert f[key] == pytest.approx(c4 * ratio, rel=1e-12), key
    assert min(f) == 21 and max(f) == 108 and len(f) == 52            # the piano's white keys


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode("latin-1"))
    return p


def test_scl_spec_pitch_lines(tmp_path):
    # the valid pitch lines of the spec, an empty description, CR LF, a Latin-1 comment
    text = ("! spec.scl\r\n! \xe9t\xe9\r\n\r\n 9\r\n!\r\n81/64\r\n408.0\r\n408.\r\n5\r\n-5.0\r\n"
            "10/20\r\n100.0 cents\r\n 100.0 C#\r\n 5/4   E\\\r\n")
    desc, c = T.read_scl(write(tmp_path, "spec.scl", text))
    assert desc == ""
    np.testing.assert_allclose(c, [cents(81 / 64), 408.0, 408.0, cents(5), -5.0, -1200.0,
                                   100.0, 100.0, cents(5 / 4)])
    desc, c = T.parse_scl("zero notes\n0\n")
    assert (desc, c) == ("zero notes", [])
    with pytest.raises(T.TuningError, match="no pitches"):
        T.scala_key_frequencies(c)


@pytest.mark.parametrize("text, line, what", [
    ("! bad.scl\ndesc\ntwelve\n", 3, "number of notes"),
    ("desc\n 3\n 100.0\n abc\n 2/1\n", 4, "expected a pitch"),
    ("desc\n 3\n 100.0\n\n 2/1\n", 4, "empty line"),
    ("desc\n 2\n! c\n -5/4\n 2/1\n", 4, "negative ratio"),
    ("desc\n 2\n 3/0\n 2/1\n", 3, "zero denominator"),
    ("desc\n 2\n 0/1\n 2/1\n", 3, "ratios must be positive"),
    ("desc\n 2\n 100,0\n 2/1\n", 3, "unexpected ','"),
    ("desc\n 3\n 100.0\n 2/1\n! end\n", 5, "file ends after 2 of the 3 pitches"),
    ("desc\n 2\n 100.0\n 2/1\n 3/1\n", 5, "more pitch lines than the 2 notes"),
    ("! only a comment\n", 1, "empty file"),
    ("desc\n", 1, "before the number of notes"),
])
def test_malformed_scl_names_file_and_line(tmp_path, text, line, what):
    p = write(tmp_path, "bad.scl", text)
    with pytest.raises(T.TuningError, match=what) as e:
        T.read_scl(p)
    assert isinstance(e.value, PianosynthError)
    assert e.value.line == line and e.value.path == str(p)
    assert str(e.value).startswith(f"{p}, line {line}: ")


KBM_HEAD = "! h\n12\n0\n127\n60\n69\n440.0\n12\n"


@pytest.mark.parametrize("text, line, what", [
    ("! m\ntwelve\n", 2, "size of map"),
    ("12\n0\n127\n60\n69\nfast\n12\n", 6, "reference frequency"),
    ("12\n0\n127\n60\n69\n-440.0\n12\n", 6, "reference frequency"),
    ("12\n0\n200\n60\n69\n440\n12\n", 3, "out of range"),
    ("12\n100\n50\n60\n69\n440\n12\n", 3, "below the first note"),
    ("12\n0\n127\n60\n", 4, "file ends before the reference note"),
    (KBM_HEAD + "0\n1\ny\n", 11, "mapping entry"),
    (KBM_HEAD + "0\n1\n-2\n", 11, "mapping entry"),
    (KBM_HEAD + "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", 21, "more mapping entries"),
    (KBM_HEAD + "0\n1\n2\n3\n4\n5\n6\n7\n8\nx\n", 6, "reference note 69 is unmapped"),
    (KBM_HEAD + "0\n1\n2\n", 6, "left out, so unmapped"),
])
def test_malformed_kbm_names_file_and_line(tmp_path, text, line, what):
    p = write(tmp_path, "bad.kbm", text)
    with pytest.raises(T.TuningError, match=what) as e:
        T.read_kbm(p)
    assert e.value.line == line
    assert str(e.value).startswith(f"{p}, line {line}: ")


def test_missing_file_is_a_tuning_error(tmp_path):
    with pytest.raises(T.TuningError, match="cannot read"):
        T.read_scl(tmp_path / "nope.scl")


# --------------------------------------------------------------------------- overrides
def test_overrides_put_partial_one_on_target_in_the_design():
    for kind, kw in [("werckmeister3", {}), ("vallotti", {"stretch": "table"}),
                     ("scala", {"scl": TUNINGS / "meantone_quarter_comma.scl"})]:
        targets = T.tuning_f1_hz(kind, **kw)
        ov = T.tuning_key_overrides(kind, **kw)
        assert set(ov) == set(targets) == set(range(21, 109))
        assert all(set(v) == {"f0_hz"} for v in ov.values())
        kp = design_keyboard(None, ov)
        got = kp.f1_hz[np.array(sorted(targets)) - KEY_MIN]
        np.testing.assert_allclose(got, [targets[k] for k in sorted(targets)], rtol=1e-12)
    # A4 held at a4_hz by the temperament (Railsback stretch is 0 there)
    t = T.tuning_f1_hz("werckmeister3", a4_hz=442.0)
    assert t[69] == pytest.approx(442.0)
    assert t[60] == pytest.approx(442.0 * 2 ** ((-900 + 11.730) / 1200.0))   # C = A + 11.73
    # a Scala mapping may leave keys out: no override there
    ov = T.tuning_key_overrides("scala", scl=TUNINGS / "just_major_7.scl",
                                kbm=TUNINGS / "white_keys_7.kbm")
    assert 61 not in ov and 60 in ov
    with pytest.warns(UserWarning, match="keep the default tuning"):    # runs off the top
        ov = T.tuning_key_overrides("scala", scl=TUNINGS / "just_major_7.scl")
    assert 60 in ov and 108 not in ov
    with pytest.raises(T.TuningError, match="needs a scale"):
        T.tuning_key_overrides("scala")
    with pytest.raises(T.TuningError, match="unknown stretch"):
        T.tuning_key_overrides("equal", stretch="wide")
    merged = T.merge_key_overrides({60: {"t60_f0_s": 9.0, "f0_hz": 1.0}}, {60: {"f0_hz": 2.0}})
    assert merged == {60: {"t60_f0_s": 9.0, "f0_hz": 2.0}}


RENDER_KEYS = (28, 40, 52, 58, 63, 69, 81, 96)


def measure_partial_one(eng, key, f_target):
    eng.reset()
    y = eng.render_frames(FS, make_events([(0, 0x90, key, 80)]))[:, 0]
    f = A.partial_frequency(y, FS, f_target)
    return cents(f / f_target)


def test_render_werckmeister3_partial_one_on_target():
    """Rendered partial 1 within 0.5 cent of Werckmeister III (published cents, A4 = 440 Hz,
    no stretch), target computed here from the table, not by the module."""
    ov = T.tuning_key_overrides("werckmeister3", stretch="none", a4_hz=440.0)
    eng = Engine({"resonators_on": 0}, FS, key_overrides=ov)
    table = np.array(PUBLISHED["werckmeister3"])
    for key in RENDER_KEYS:
        target = 440.0 * 2.0 ** ((100.0 * (key - 69) + table[key % 12] - 100 * (key % 12)
                                  - (table[9] - 900.0)) / 1200.0)
        err = measure_partial_one(eng, key, target)
        assert abs(err) < 0.5, f"key {key}: {err:+.3f} cent"


def test_render_scala_meantone_partial_one_on_target():
    """The meantone .scl with the A440 mapping: partial 1 within 0.5 cent of the scale."""
    ov = T.tuning_key_overrides("scala", scl=TUNINGS / "meantone_quarter_comma.scl",
                                kbm=TUNINGS / "a440_c60.kbm")
    eng = Engine({"resonators_on": 0}, FS, key_overrides=ov)
    above_c = np.array(PUBLISHED["quarter_comma_meantone"])
    for key in RENDER_KEYS:
        octave, pc = divmod(key - 60, 12)
        target = 440.0 * 2.0 ** ((1200.0 * octave + above_c[pc] - above_c[9]) / 1200.0)
        err = measure_partial_one(eng, key, target)
        assert abs(err) < 0.5, f"key {key}: {err:+.3f} cent"


# --------------------------------------------------------------------------- MTS
def test_mts_known_messages():
    # A4 -> B4 in program 0 (device 0), and A4 + 50 cents in program 1
    r = mts.decode_single_note_tuning(bytes.fromhex("F07F000802000145470000F7"))
    assert r.ok and r.realtime and (r.device_id, r.bank, r.program) == (0, 0, 0)
    assert r.changes == [(69, pytest.approx(440.0 * 2 ** (2 / 12)))]
    r = mts.decode_single_note_tuning(bytes.fromhex("F07F000802010145454000F7"))
    assert r.program == 1 and r.changes == [(69, pytest.approx(440.0 * 2 ** (50 / 1200)))]
    two = mts.parse_single_note_tuning(bytes.fromhex("F07F 0008 0200 02 45470000 47480000 F7"))
    assert [k for k, _ in two] == [69, 71]
    assert two[1][1] == pytest.approx(440.0 * 2 ** (3 / 12))
    # bank forms, real-time and non-real-time; mido-style data without F0/F7
    r = mts.decode_single_note_tuning([0x7E, 0x7F, 0x08, 0x07, 0x03, 0x05, 0x01,
                                       60, 60, 0x20, 0x00])
    assert r.ok and not r.realtime and (r.bank, r.program) == (3, 5)
    assert r.changes == [(60, pytest.approx(261.6256 * 2 ** (25 / 1200), rel=1e-6))]
    # 7F 7F 7F means "no change" and is skipped
    r = mts.decode_single_note_tuning(bytes.fromhex("F07F7F08020002407F7F7F41410000F7"))
    assert r.skipped == 1 and r.changes == [(65, pytest.approx(440.0 * 2 ** (-4 / 12)))]
    assert mts.mts_frequency_hz(0, 0, 0) == pytest.approx(8.175799, rel=1e-6)
    assert mts.mts_frequency_bytes(440.0 * 2 ** (0.5 / 12)) == (69, 0x40, 0x00)


def test_mts_round_trip():
    rng = np.random.default_rng(7)
    f = 440.0 * 2.0 ** (rng.uniform(-60, 50, 100) / 12.0)
    keys = rng.integers(0, 128, 100)
    for bank, realtime in [(None, True), (9, True), (9, False)]:
        msg = mts.encode_single_note_tuning(zip(keys, f), program=4, device_id=0x10,
                                            bank=bank, realtime=realtime)
        r = mts.decode_single_note_tuning(msg, device_id=0x10)
        assert r.ok and r.realtime == realtime and r.program == 4
        assert [k for k, _ in r.changes] == list(keys)
        err = np.array([cents(g / h) for (_, g), h in zip(r.changes, f)])
        assert np.max(np.abs(err)) <= 100.0 / 16384 / 2 + 1e-9       # half a step
    # the tuning of a whole keyboard survives the round trip
    targets = T.tuning_f1_hz("kirnberger3")
    msg = mts.encode_single_note_tuning(targets.items())
    back = dict(mts.parse_single_note_tuning(msg))
    assert max(abs(cents(back[k] / v)) for k, v in targets.items()) < 0.0031
    with pytest.raises(ValueError, match="outside the MTS range"):
        mts.encode_single_note_tuning([(60, 20000.0)])


@pytest.mark.parametrize("hexmsg, reason", [
    ("F07E000801000000F7", "not a single note tuning change"),
    ("F07F0008080000F7", "not a single note tuning change"),
    ("F07E 00 0802 00 01 45470000 F7", "real-time only"),
    ("F07F000802000245470000F7", "count byte says 2"),
    ("F07F0008020001454700F7", "count byte says 1"),
    ("F07F 00 0902 00 01 45470000 F7", "not a MIDI Tuning Standard"),
    ("F043 00 0802 00 01 45470000 F7", "not a universal SysEx"),
    ("F07F 00 0802 00 01 45479000 F7", "not a 7-bit data byte"),
    ("F07F000802000145470000", "does not end with F7"),
    ("F07F 05 0802 00 01 45470000 F7", "addressed to device 5"),
    ("F07F0008F7", "too short"),
])
def test_mts_invalid_messages_are_ignored_with_a_reason(hexmsg, reason):
    msg = bytes.fromhex(hexmsg)
    r = mts.decode_single_note_tuning(msg, device_id=0)
    assert not r.ok and r.changes == [] and reason in r.reason
    assert mts.parse_single_note_tuning(msg, device_id=0) is None
    assert mts.parse_single_note_tuning("not bytes at all") is None


def test_parsers_and_decoder_never_fail_otherwise():
    """Random input: the file parsers raise only TuningError, the MTS decoder never raises."""
    rng = np.random.default_rng(3)
    alphabet = list("0123456789./-+ x!\n\t abcE")
    for _ in range(400):
        text = "".join(rng.choice(alphabet, rng.integers(0, 60)))
        for parse in (T.parse_scl, T.parse_kbm):
            try:
                parse(text)
            except T.TuningError:
                pass
        msg = bytes(rng.integers(0, 256, rng.integers(0, 24)).astype(np.uint8))
        head = bytes.fromhex("F07F7F0802")
        for m in (msg, head + msg, head + bytes(b & 0x7F for b in msg) + b"\xf7"):
            r = mts.decode_single_note_tuning(m)
            assert r.ok or r.changes == []
            assert all(0 <= k <= 127 and math.isfinite(f) for k, f in r.changes)
