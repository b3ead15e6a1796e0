"""MIDI Tuning Standard SysEx in MIDI files: decoded, applied at its sample by the offline
render, measured on the output; bad SysEx ignored with one warning.

Oracle: the frequency in the message (MTS spec: f = 440 Hz 2^((xx + frac/16384 - 69)/12)),
against partial 1 of the rendered note measured with :func:`analysis.partial_frequency`
(Blackman-Harris windowed DTFT peak).
"""
import math

import mido
import numpy as np
import pytest

from pianosynth import analysis as A
from pianosynth.cli import main
from pianosynth.engine.core import Engine
from pianosynth.io import mts
from pianosynth.io.midi_file import read_midi_content, read_midi_file
from pianosynth.io.render import render_midi

from test_midi_file import off, on, write_midi

FS = 44100
TARGET_HZ = 445.0                      # A4 retuned from its default (440 Hz + stretch)
SETTINGS = {"resonators_on": 0}        # one mode per partial: a clean peak to measure


def cents(ratio):
    return 1200.0 * math.log2(ratio)


def sysex(message: bytes) -> mido.Message:
    """A mido SysEx message from F0 ... F7 bytes (mido keeps the data without framing)."""
    return mido.Message("sysex", data=list(message[1:-1]))


def retune_a4_file(path, extra=()):
    """A4 0..0.5 s (default tuning), MTS A4 -> 445 Hz at 1 s, A4 again at 1.05 s."""
    msg = mts.encode_single_note_tuning([(69, TARGET_HZ)])
    return write_midi(path, [[(0, on(69)), (480, off(69)), (960, sysex(msg)),
                              (1008, on(69)), (2400, off(69)), *extra]])


@pytest.fixture(scope="module")
def engine():
    return Engine(SETTINGS, FS)


def test_file_retune_reads_times_and_frequencies(tmp_path):
    c = read_midi_content(retune_a4_file(tmp_path / "r.mid"))
    assert len(c.retunes) == 1 and c.ignored_mts == 0 and c.warning("x") is None
    t, changes = c.retunes[0]
    assert t == pytest.approx(1.0)
    assert list(changes) == [69]
    assert abs(cents(changes[69] / TARGET_HZ)) < 0.0031          # MTS resolution / 2
    # the plain reader still gives just the events
    assert len(read_midi_file(tmp_path / "r.mid")) == 4


def test_render_applies_single_note_retune_within_half_a_cent(tmp_path, engine):
    """A4 before the message at the engine's own tuning, after it at 445 Hz (< 0.5 cent)."""
    engine.reset()
    c = read_midi_content(retune_a4_file(tmp_path / "r.mid"))
    default_hz = engine.keys.kp.f1_hz[69 - 21]
    y = render_midi(c.events, engine, FS, tail=1.0, retunes=c.retunes)[:, 0].astype(float)
    first = A.partial_frequency(y[:int(0.5 * FS)], FS, default_hz, search_hz=4.0, onset=0)
    seg = y[int(1.05 * FS):]
    second = A.partial_frequency(seg, FS, TARGET_HZ, search_hz=4.0, onset=0)
    err_first = cents(first / default_hz)
    err = cents(second / TARGET_HZ)
    print(f"A4 before the MTS message: {first:.3f} Hz ({err_first:+.3f} cent from the "
          f"default {default_hz:.3f} Hz); after: {second:.3f} Hz ({err:+.3f} cent from "
          f"{TARGET_HZ} Hz)")
    assert abs(err_first) < 0.5
    assert abs(err) < 0.5
    assert abs(cents(TARGET_HZ / default_hz)) > 10          # the retune really moved it


def test_retune_split_does_not_depend_on_block_size(tmp_path):
    c = read_midi_content(retune_a4_file(tmp_path / "r.mid"))
    outs = []
    for bs in (512, 333):
        eng = Engine(SETTINGS, FS)
        outs.append(render_midi(c.events, eng, FS, block_size=bs, tail=0.3,
                                retunes=c.retunes))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_bulk_dump_and_scale_octave_messages():
    # bulk dump: every key of a Werckmeister-like table, 7F 7F 7F ("no change") for key 0
    table = {k: 440.0 * 2 ** ((k - 69) / 12 + 3.0 / 1200) for k in range(1, 128)}
    msg = mts.encode_bulk_dump(table, program=3, name="test")
    r = mts.decode_tuning_message(msg)
    assert r.ok and r.kind == "bulk_dump" and r.name == "test" and r.program == 3
    got = dict(r.changes)
    assert 0 not in got and len(got) == 127
    assert max(abs(cents(got[k] / f)) for k, f in table.items()) < 0.0031
    bad = bytearray(msg)
    bad[-2] ^= 0x01                                      # wrong checksum
    assert "checksum" in mts.decode_tuning_message(bytes(bad)).reason
    assert "non-real-time" in mts.decode_tuning_message(
        bytes([0xF0, 0x7F]) + msg[2:]).reason
    # scale/octave, both forms: every A a quarter tone... 25 cents sharp, E 10 cents flat
    offs = [0.0] * 12
    offs[9], offs[4] = 25.0, -10.0
    for two in (True, False):
        r = mts.decode_tuning_message(mts.encode_scale_octave(offs, two_byte=two))
        assert r.ok and r.kind == "scale_octave"
        got = dict(r.changes)
        assert cents(got[69] / 440.0) == pytest.approx(25.0, abs=0.01)
        assert cents(got[64] / (440.0 * 2 ** (-5 / 12))) == pytest.approx(-10.0, abs=0.01)
        assert got[60] == pytest.approx(440.0 * 2 ** (-9 / 12))
    assert not mts.decode_tuning_message(bytes.fromhex("F07F7F080903 7F7F 4000 F7")).ok
    assert "does not retune keys" in mts.decode_tuning_message(
        bytes.fromhex("F07E7F0803 00 F7")).reason
    assert mts.is_mts_message(bytes.fromhex("F07E7F0803F7"))
    assert not mts.is_mts_message(bytes.fromhex("F07E7F0901F7"))     # GM system on


def test_bad_and_foreign_sysex_ignored_with_one_warning(tmp_path, capsys):
    """Two broken MTS messages and a GM reset: the file renders, one warning line."""
    bad_count = bytes.fromhex("F07F7F0802000245470000F7")           # says 2 changes, has 1
    bad_sub = bytes.fromhex("F07F7F08 0A 00F7")                      # no such MTS form
    gm_on = bytes.fromhex("F07E7F0901F7")
    p = retune_a4_file(tmp_path / "bad.mid", extra=[(10, sysex(bad_count)),
                                                    (20, sysex(bad_sub)),
                                                    (30, sysex(gm_on))])
    c = read_midi_content(p)
    assert c.ignored_mts == 2 and len(c.retunes) == 1
    assert "count byte says 2" in c.ignored_reason
    out = tmp_path / "bad.wav"
    code = main(["render", str(p), "-o", str(out), "--tail", "0.2", "--quality", "eco"])
    err = capsys.readouterr().err
    assert code == 0 and out.is_file()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"pianosynth: warning: {p}: 2 MIDI Tuning Standard messages ignored "
                     "(first: at 0.010 s: count byte says 2 changes (8 bytes) but 4 bytes "
                     "follow)"], err
    assert "Traceback" not in err


def test_unchanged_and_merged_retunes_cost_no_redesign():
    """Retunings between the same two note-ons merge into one redesign; a retuning to the
    frequencies the keys already have is skipped."""
    from pianosynth.io.midi_file import MIDI_EVENT_DTYPE

    class Counting(Engine):
        calls = []

        def retune_keys(self, f1_hz):
            self.calls.append(dict(f1_hz))
            super().retune_keys(f1_hz)

    eng = Counting(SETTINGS, FS)
    ev = np.array([(0.0, 0x90, 60, 80), (0.2, 0x80, 60, 0), (0.3, 0x90, 69, 80),
                   (0.4, 0x80, 69, 0)], MIDI_EVENT_DTYPE)
    same = float(eng.keys.kp.f1_hz[62 - 21])
    retunes = [(0.1, {69: 441.0}), (0.15, {69: 442.0, 64: 330.0}),   # merged at 0.15 s
               (0.35, {62: same})]                                   # no change: skipped
    render_midi(ev, eng, FS, tail=0.05, retunes=retunes)
    assert Counting.calls == [{69: 442.0, 64: 330.0}]
