"""MIDI file reader: tempo maps, track merging, channels, hold counting, bad files."""
from pathlib import Path

import mido
import numpy as np
import pytest

from pianosynth.errors import PianosynthError
from pianosynth.io.midi_file import MIDI_EVENT_DTYPE, duration_s, read_midi_file

DEMO = Path(__file__).resolve().parent.parent / "pianosynth" / "data" / "scn15_7.mid"


def write_midi(path, tracks, ticks_per_beat=480, type=1):
    """``tracks``: lists of (abs_tick, mido message) -> a MIDI file at ``path``."""
    mid = mido.MidiFile(type=type, ticks_per_beat=ticks_per_beat)
    for rows in tracks:
        tr = mido.MidiTrack()
        last = 0
        for tick, msg in sorted(rows, key=lambda r: r[0]):
            tr.append(msg.copy(time=tick - last))
            last = tick
        mid.tracks.append(tr)
    mid.save(path)
    return path


def on(note, vel=80, ch=0):
    return mido.Message("note_on", note=note, velocity=vel, channel=ch)


def off(note, ch=0):
    return mido.Message("note_off", note=note, velocity=0, channel=ch)


def cc(control, value, ch=0):
    return mido.Message("control_change", control=control, value=value, channel=ch)


def tempo(us):
    return mido.MetaMessage("set_tempo", tempo=us)


def rows(events):
    return [(round(float(t), 9), int(s), int(a), int(b)) for t, s, a, b in events]


# ---------------------------------------------------------------------------- good files
def test_tempo_change_mid_file_two_tracks(tmp_path):
    # 480 ticks/beat; 120 bpm (0.5 s/beat) for 2 beats, then 240 bpm (0.25 s/beat)
    p = write_midi(tmp_path / "t.mid", [
        [(0, tempo(500_000)), (960, tempo(250_000))],
        [(0, on(60)), (480, off(60)), (1440, on(62)), (1920, off(62))],
        [(240, cc(64, 127, ch=1)), (1200, on(48, 50, ch=1)), (2400, cc(64, 0, ch=1)),
         (2400, off(48, ch=1))],
    ])
    ev = read_midi_file(p)
    assert ev.dtype == MIDI_EVENT_DTYPE
    assert rows(ev) == [
        (0.0, 0x90, 60, 80),
        (0.25, 0xB1, 64, 127),
        (0.5, 0x80, 60, 0),
        (1.125, 0x91, 48, 50),     # 1.0 s + 240 ticks at 0.25 s/beat
        (1.25, 0x90, 62, 80),
        (1.5, 0x80, 62, 0),
        (1.75, 0xB1, 64, 0),       # same tick: file order (pedal up, then key up)
        (1.75, 0x81, 48, 0),
    ]
    assert duration_s(ev) == pytest.approx(1.75)


def test_tempo_event_in_a_later_track_applies_to_all_tracks(tmp_path):
    p = write_midi(tmp_path / "t.mid", [
        [(0, on(60)), (960, off(60))],
        [(0, tempo(1_000_000))],               # 60 bpm, stored in track 1 (type 1 allows)
    ])
    assert rows(read_midi_file(p))[-1] == (2.0, 0x80, 60, 0)


def test_type0_and_default_tempo(tmp_path):
    p = write_midi(tmp_path / "t.mid", [[(0, on(60)), (480, off(60))]], type=0)
    assert rows(read_midi_file(p)) == [(0.0, 0x90, 60, 80), (0.5, 0x80, 60, 0)]  # 120 bpm


def test_type2_tracks_are_independent_sequences(tmp_path):
    p = write_midi(tmp_path / "t.mid", [
        [(0, tempo(1_000_000)), (0, on(60)), (480, off(60))],     # 1 s/beat -> off at 1.0
        [(0, on(64)), (480, off(64))],                            # default 0.5 s/beat
    ], type=2)
    assert rows(read_midi_file(p)) == [(0.0, 0x90, 60, 80), (0.0, 0x90, 64, 80),
                                       (0.5, 0x80, 64, 0), (1.0, 0x80, 60, 0)]


def test_smpte_division(tmp_path):
    # 25 frames/s x 40 ticks/frame = 1000 ticks/s; tempo events are ignored
    p = write_midi(tmp_path / "t.mid", [[(0, tempo(100_000)), (0, on(60)), (1500, off(60))]])
    b = bytearray(p.read_bytes())
    b[12:14] = bytes([256 - 25, 40])           # division: -25 frames/s, 40 ticks/frame
    p.write_bytes(bytes(b))
    assert rows(read_midi_file(p))[-1] == (1.5, 0x80, 60, 0)


def test_every_channel_plays_and_only_piano_messages_are_kept(tmp_path):
    track = []
    for ch in range(16):
        track += [(ch * 10, on(40 + ch, 64, ch)), (ch * 10 + 5, off(40 + ch, ch))]
    track += [(200, mido.Message("program_change", program=5)), (200, cc(7, 100)),
              (200, cc(10, 64)), (210, cc(66, 127, 3)), (220, cc(67, 127, 4)),
              (230, cc(120, 0, 5)), (240, cc(123, 0, 6)),
              (250, mido.Message("pitchwheel", pitch=100)),
              (260, mido.MetaMessage("text", text="hello"))]
    ev = read_midi_file(write_midi(tmp_path / "t.mid", [track]))
    notes_on = ev[(ev["status"] & 0xF0) == 0x90]
    assert sorted(notes_on["status"] & 0x0F) == list(range(16))
    assert sorted(notes_on["data1"]) == list(range(40, 56))
    ccs = ev[(ev["status"] & 0xF0) == 0xB0]
    assert list(ccs["data1"]) == [66, 67, 120, 123]
    assert set(ev["status"] & 0xF0) == {0x80, 0x90, 0xB0}


def test_note_on_velocity_zero_is_kept_as_note_off_message(tmp_path):
    p = write_midi(tmp_path / "t.mid", [[(0, on(60)), (480, on(60, 0))]])
    assert rows(read_midi_file(p)) == [(0.0, 0x90, 60, 80), (0.5, 0x90, 60, 0)]


def test_doubled_key_is_released_by_the_last_holder(tmp_path):
    # channel 0 and 1 both hold C4; ch0 lets go first: the key stays down until ch1 lets go
    p = write_midi(tmp_path / "t.mid", [
        [(0, on(60, 80, 0)), (480, off(60, 0))],
        [(240, on(60, 70, 1)), (960, off(60, 1))],
    ])
    assert rows(read_midi_file(p)) == [(0.0, 0x90, 60, 80), (0.25, 0x91, 60, 70),
                                       (1.0, 0x81, 60, 0)]


def test_all_notes_off_clears_the_hold_count(tmp_path):
    p = write_midi(tmp_path / "t.mid", [[(0, on(60)), (10, on(60)), (20, cc(123, 0)),
                                         (30, on(60)), (40, off(60))]])
    ev = read_midi_file(p)
    assert list(ev["status"]) == [0x90, 0x90, 0xB0, 0x90, 0x80]


def test_bundled_demo_file():
    ev = read_midi_file(DEMO)
    n_notes = int((((ev["status"] & 0xF0) == 0x90) & (ev["data2"] > 0)).sum())
    assert n_notes == 456                                  # MANIFEST.csv
    assert duration_s(ev) == pytest.approx(136.8, abs=0.1)
    assert np.all(np.diff(ev["time_s"]) >= 0)
    assert np.any((ev["status"] == 0xB0) & (ev["data1"] == 64))   # sustain pedal


# ----------------------------------------------------------------------------- bad files
def expect_error(path, *words, **kw):
    with pytest.raises(PianosynthError) as e:
        read_midi_file(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.mid", "not found", "nope.mid")


def test_text_file(tmp_path):
    p = tmp_path / "notes.mid"
    p.write_text("this is not MIDI\n")
    expect_error(p, "not a MIDI file", "notes.mid")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mid"
    p.write_bytes(b"")
    expect_error(p, "not a MIDI file")


def test_folder(tmp_path):
    expect_error(tmp_path, "folder")


@pytest.mark.parametrize("cut", [20, 100, 1500, 3000, 5300, 5392])
def test_truncated_demo(tmp_path, cut):
    p = tmp_path / "cut.mid"
    p.write_bytes(DEMO.read_bytes()[:cut])
    expect_error(p, "cut.mid", "truncated")


def test_every_truncation_is_a_clean_error(tmp_path):
    data = DEMO.read_bytes()
    p = tmp_path / "cut.mid"
    for cut in range(0, len(data), 97):
        p.write_bytes(data[:cut])
        with pytest.raises(PianosynthError):
            read_midi_file(p)


def test_corrupt_bytes_are_clean_errors(tmp_path):
    rng = np.random.default_rng(3)
    data = bytearray(DEMO.read_bytes())
    p = tmp_path / "bad.mid"
    for _ in range(60):
        b = bytearray(data)
        for i in rng.integers(14, len(b), 8):
            b[i] = int(rng.integers(0, 256))
        p.write_bytes(bytes(b))
        try:
            read_midi_file(p)
        except PianosynthError as e:
            assert "\n" not in str(e)


def test_no_notes(tmp_path):
    p = write_midi(tmp_path / "t.mid", [[(0, cc(64, 127)), (480, cc(64, 0))]])
    expect_error(p, "no notes")


def test_zero_tempo(tmp_path):
    p = write_midi(tmp_path / "t.mid", [[(0, tempo(0)), (0, on(60)), (480, off(60))]])
    expect_error(p, "tempo 0")


def test_huge_delta_time(tmp_path):
    p = write_midi(tmp_path / "t.mid", [[(0, on(60)), (0x0FFFFFFF, off(60))]], ticks_per_beat=96)
    expect_error(p, "past the limit of 2:00:00")


def test_duration_cap_is_configurable(tmp_path):
    p = write_midi(tmp_path / "t.mid", [[(0, on(60)), (480 * 20, off(60))]])   # 10 s
    assert duration_s(read_midi_file(p)) == 10.0
    expect_error(p, "past the limit", max_duration_s=5.0)


def test_zero_division(tmp_path):
    p = write_midi(tmp_path / "t.mid", [[(0, on(60)), (480, off(60))]])
    b = bytearray(p.read_bytes())
    b[12:14] = b"\x00\x00"                      # ticks per beat in the header
    p.write_bytes(bytes(b))
    expect_error(p, "time division")
