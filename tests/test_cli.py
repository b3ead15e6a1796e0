"""Command line, offline renderer and audio writer: happy paths and every bad-input case.

Renders are short (about 1 s of audio at 44.1 kHz); the first one in a session pays the
engine's one-off numba compile.
"""
import os
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from pianosynth import cli
from pianosynth.cli import key_name, main, parse_key
from pianosynth.errors import PianosynthError
from pianosynth.io.audio_file import check_output_path, write_audio
from pianosynth.io.midi_file import MIDI_EVENT_DTYPE, read_midi_file
from pianosynth.io.render import AUTO_TAIL_MAX_S, normalize, peak_dbfs, render_midi
from pianosynth.presets import Preset, save_preset

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pianosynth" / "data" / "scn15_7.mid"
SR = 44100
LAST_EVENT_S = 0.75          # of tiny_midi


@pytest.fixture(scope="session")
def tiny_midi(tmp_path_factory):
    """Two tracks, a tempo change at 0.5 s, sustain pedal, notes on two channels.

    Events at 0, 0.25 (pedal down), 0.5 (C4 off), 0.5625, 0.625, 0.75 s (pedal up, keys up).
    """
    path = tmp_path_factory.mktemp("midi") / "tiny.mid"
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    t0 = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0),
                         mido.MetaMessage("set_tempo", tempo=250_000, time=480)])
    t1 = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                         mido.Message("note_off", note=60, time=480),
                         mido.Message("note_on", note=64, velocity=70, time=120),
                         mido.Message("note_off", note=64, time=360)])
    t2 = mido.MidiTrack([mido.Message("control_change", channel=1, control=64, value=127,
                                      time=240),
                         mido.Message("note_on", channel=1, note=43, velocity=60, time=480),
                         mido.Message("control_change", channel=1, control=64, value=0,
                                      time=240),
                         mido.Message("note_off", channel=1, note=43, time=0)])
    mid.tracks += [t0, t1, t2]
    mid.save(path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, out, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pianosynth: error: "), err
    assert "Traceback" not in out + err
    for w in words:
        assert w in err, err


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ---------------------------------------------------------------------------- key names
@pytest.mark.parametrize("text, key", [("A0", 21), ("C4", 60), ("F#5", 78), ("Bb3", 58),
                                       ("c4", 60), ("bb3", 58), (" C8 ", 108), ("60", 60),
                                       ("21", 21), ("B#3", 60), ("Cb4", 59), ("F♯5", 78),
                                       ("B♭3", 58), ("A4", 69)])
def test_parse_key(text, key):
    assert parse_key(text) == key


@pytest.mark.parametrize("text", ["H4", "C#", "", "C4.5", "20", "109", "C9", "G#-1", "Bb8",
                                  "C 4", "x", "-5", "Cbb4"])
def test_parse_key_rejects(text):
    with pytest.raises(PianosynthError):
        parse_key(text)


def test_key_names_round_trip():
    assert [parse_key(key_name(k)) for k in range(21, 109)] == list(range(21, 109))
    assert key_name(78) == "F#5" and key_name(21) == "A0"


# ------------------------------------------------------------------------- happy paths
@pytest.mark.parametrize("ext, subtype", [(".wav", "PCM_16"), (".wav", "PCM_24"),
                                          (".wav", "FLOAT"), (".flac", "PCM_16"),
                                          (".flac", "PCM_24")])
def test_render_formats_and_exact_length(capsys, tmp_path, tiny_midi, ext, subtype):
    out = tmp_path / f"out{ext}"
    code, stdout, err = run(capsys, "render", tiny_midi, "-o", out, "--sample-rate", SR,
                            "--subtype", subtype, "--tail", "0.25")
    assert code == 0, err
    info = sf.info(str(out))
    assert info.subtype == subtype and info.samplerate == SR and info.channels == 2
    assert info.frames == round(LAST_EVENT_S * SR) + round(0.25 * SR)
    a, _ = sf.read(str(out), always_2d=True)
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) > 1e-3      # it made sound
    assert files_in(tmp_path) == [out.name]                         # no temp file left
    assert "3 notes from tiny.mid" in stdout and "dBFS" in stdout and "real time" in stdout


def test_render_default_output_name_and_auto_tail(capsys, tmp_path, tiny_midi, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "render", tiny_midi, "--sample-rate", SR, "-q")
    assert code == 0, err
    info = sf.info("tiny.wav")
    assert info.subtype == "PCM_24"
    assert LAST_EVENT_S * SR <= info.frames <= (LAST_EVENT_S + AUTO_TAIL_MAX_S) * SR + 1


def test_render_normalize(capsys, tmp_path, tiny_midi):
    out = tmp_path / "n.wav"
    code, _, err = run(capsys, "render", tiny_midi, "-o", out, "--sample-rate", SR,
                       "--subtype", "FLOAT", "--tail", "0.1", "--normalize", "-q")
    assert code == 0, err
    a, _ = sf.read(str(out))
    assert peak_dbfs(a) == pytest.approx(-1.0, abs=1e-3)


def test_render_with_preset_file(capsys, tmp_path, tiny_midi):
    loud = save_preset(Preset(name="quiet", settings={"master_gain_db": -20.0}),
                       tmp_path / "quiet.toml")
    peaks = []
    for extra in ([], ["--preset", loud]):
        out = tmp_path / f"p{len(peaks)}.wav"
        code, stdout, err = run(capsys, "render", tiny_midi, "-o", out, "--sample-rate", SR,
                                "--subtype", "FLOAT", "--tail", "0.1", *extra)
        assert code == 0, err
        peaks.append(peak_dbfs(sf.read(str(out))[0]))
    assert "preset 'quiet'" in stdout
    assert peaks[1] < peaks[0] - 10.0


@pytest.mark.parametrize("channel", [0, 9, 15])
def test_every_channel_plays(capsys, tmp_path, channel):
    path = tmp_path / f"ch{channel}.mid"
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([
        mido.Message("note_on", channel=channel, note=67, velocity=100, time=0),
        mido.Message("note_off", channel=channel, note=67, time=240)]))
    mid.save(path)
    out = tmp_path / "x.wav"
    code, _, err = run(capsys, "render", path, "-o", out, "--sample-rate", SR, "--tail", "0.2",
                       "--subtype", "FLOAT", "-q")
    assert code == 0, err
    assert peak_dbfs(sf.read(str(out))[0]) > -40.0


def test_note_c4(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run(capsys, "note", "C4", "--sample-rate", SR, "--duration", "0.2",
                            "--tail", "0.3")
    assert code == 0, err
    info = sf.info("note_C4.wav")
    assert info.frames == round(0.5 * SR)
    assert "C4 (MIDI 60)" in stdout
    a, _ = sf.read("note_C4.wav")
    assert np.max(np.abs(a)) > 1e-3


def test_note_by_name_and_number(capsys, tmp_path):
    for key, name in (("F#5", "fs.flac"), ("58", "bb.wav")):
        code, _, err = run(capsys, "note", key, "-o", tmp_path / name, "--sample-rate", SR,
                           "--duration", "0.1", "--tail", "0.1", "--velocity", "20", "-q")
        assert code == 0, err
    assert files_in(tmp_path) == ["bb.wav", "fs.flac"]


def test_version_via_python_m():
    r = subprocess.run([sys.executable, "-m", "pianosynth", "--version"], capture_output=True,
                       text=True, env=_env(), cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("pianosynth ")


def test_presets_command(capsys, tmp_path):
    code, out, _ = run(capsys, "presets")
    assert code == 0 and "default" in out
    code, out, _ = run(capsys, "presets", "--template")
    assert code == 0 and "a4_hz = 440.0" in out
    good = save_preset(Preset(name="g"), tmp_path / "g.toml")
    code, out, _ = run(capsys, "presets", "--check", good)
    assert code == 0 and "ok" in out


# ------------------------------------------------------------------------- bad input
def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def bad_inputs(tmp_path, tiny_midi):
    d = tmp_path / "in"
    d.mkdir()
    (d / "truncated.mid").write_bytes(DEMO.read_bytes()[:2000])
    (d / "text.mid").write_text("hello, I am not a MIDI file\n")
    (d / "unknown_key.toml").write_text("schema_version = 1\n[parameters]\na4_herz = 1.0\n")
    (d / "out_of_range.toml").write_text("schema_version = 1\n[parameters]\n"
                                         "master_gain_db = 40.0\n")
    (d / "newer.toml").write_text("schema_version = 99\n[parameters]\n")
    (d / "malformed.toml").write_text("schema_version = 1\n[parameters\na4_hz = 440.0\n")
    (d / "tiny.mid").write_bytes(tiny_midi.read_bytes())
    return d


BAD_CASES = {
    "truncated MIDI": (["render", "{in}/truncated.mid"], ["truncated.mid", "truncated"]),
    "text file": (["render", "{in}/text.mid"], ["text.mid", "not a MIDI file"]),
    "missing file": (["render", "{in}/missing.mid"], ["missing.mid", "not found"]),
    "missing folder": (["render", "{in}/tiny.mid", "-o", "/nonexistent_dir/x.wav"],
                       ["/nonexistent_dir", "does not exist"]),
    "output is a folder": (["render", "{in}/tiny.mid", "-o", "{out}"], ["folder"]),
    "flac float": (["render", "{in}/tiny.mid", "--subtype", "FLOAT", "-o", "{out}/x.flac"],
                   ["FLAC", "FLOAT"]),
    "mp3": (["render", "{in}/tiny.mid", "-o", "{out}/x.mp3"], [".wav or .flac"]),
    "unknown preset key": (["render", "{in}/tiny.mid", "--preset", "{in}/unknown_key.toml"],
                           ["a4_herz", "a4_hz"]),
    "preset out of range": (["render", "{in}/tiny.mid", "--preset",
                             "{in}/out_of_range.toml"], ["master_gain_db", "-60 to 12 dB"]),
    "newer schema": (["render", "{in}/tiny.mid", "--preset", "{in}/newer.toml"],
                     ["schema_version 99", "newer"]),
    "malformed TOML": (["render", "{in}/tiny.mid", "--preset", "{in}/malformed.toml"],
                       ["malformed TOML", "line 2"]),
    "unknown preset name": (["render", "{in}/tiny.mid", "--preset", "nosuch"], ["nosuch"]),
    "bad key name": (["note", "H4"], ["H4"]),
    "key off the piano": (["note", "C9"], ["C9", "21..108"]),
    "note preset error": (["note", "C4", "--preset", "{in}/newer.toml"], ["newer"]),
}


def _fill(argv, d_in, d_out):
    return [a.replace("{in}", str(d_in)).replace("{out}", str(d_out)) for a in argv]


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_clean_line_and_leaves_no_file(capsys, tmp_path, bad_inputs,
                                                        monkeypatch, case):
    argv, words = BAD_CASES[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.chdir(out_dir)                 # default output names land here
    argv = _fill(argv, bad_inputs, out_dir)
    if "-o" not in argv:
        argv += ["-o", str(out_dir / "x.wav")]
    before = files_in(bad_inputs)
    code, out, err = run(capsys, *argv, "--sample-rate", SR)
    assert_clean_error(code, out, err, *words)
    assert files_in(out_dir) == []             # no output file, no temporary file
    assert files_in(bad_inputs) == before


@pytest.mark.parametrize("case", ["truncated MIDI", "text file", "missing file",
                                  "unknown preset key", "malformed TOML", "missing folder"])
def test_bad_input_in_a_real_process(tmp_path, bad_inputs, case):
    argv, words = BAD_CASES[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = _fill(argv, bad_inputs, out_dir)
    if "-o" not in argv:
        argv += ["-o", str(out_dir / "x.wav")]
    r = subprocess.run([sys.executable, "-m", "pianosynth", *argv], capture_output=True,
                       text=True, env=_env(), cwd=out_dir, stdin=subprocess.DEVNULL)
    assert_clean_error(r.returncode, r.stdout, r.stderr, *words)
    assert files_in(out_dir) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /sys")
def test_unwritable_folder_sys(capsys, bad_inputs):
    code, out, err = run(capsys, "render", bad_inputs / "tiny.mid", "-o", "/sys/x.wav")
    assert_clean_error(code, out, err, "cannot write")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_unwritable_folder_read_only(capsys, tmp_path, bad_inputs):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, out, err = run(capsys, "render", bad_inputs / "tiny.mid", "-o", ro / "x.wav")
        assert_clean_error(code, out, err, "cannot write", "ermission")
        assert files_in(ro) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("argv", [["note", "C4", "--velocity", "0"],
                                  ["note", "C4", "--sample-rate", "5"],
                                  ["render", "x.mid", "--tail", "forever"],
                                  ["render", "x.mid", "--subtype", "PCM_8"],
                                  ["render"], []])
def test_usage_errors_exit_2(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err and "error" in err


def test_sample_rate_the_engine_refuses_is_a_clean_error(capsys, tmp_path, monkeypatch):
    import pianosynth.engine.core as core

    class Picky:
        def __init__(self, settings=None, sample_rate=48000, key_overrides=None, **kw):
            raise ValueError(f"sample rate {sample_rate} Hz is outside 44100..192000 Hz")
    monkeypatch.setattr(core, "Engine", Picky)
    code, out, err = run(capsys, "note", "C4", "-o", tmp_path / "x.wav", "--sample-rate",
                         "8000")
    assert_clean_error(code, out, err, "8000")
    assert files_in(tmp_path) == []


# ------------------------------------------------------------- optional command hooks
def test_optional_command_missing_module(capsys, monkeypatch):
    monkeypatch.setattr(cli, "OPTIONAL_COMMANDS", (
        ("fake", "pianosynth.no_such_module", "add_fake_arguments", "cmd_fake", "fake it"),))
    code, out, err = run(capsys, "fake", "--whatever", "1")
    assert_clean_error(code, out, err, "not part of this installation")
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "fake" in out


def test_optional_command_present(capsys, monkeypatch, tmp_path):
    (tmp_path / "fakecmd.py").write_text(
        "def add_fake_arguments(p):\n    p.add_argument('--x', type=int)\n"
        "def cmd_fake(args):\n    print('x is', args.x)\n    return 7\n")
    (tmp_path / "brokencmd.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "OPTIONAL_COMMANDS", (
        ("fake", "fakecmd", "add_fake_arguments", "cmd_fake", "fake it"),
        ("broken", "brokencmd", "add_broken_arguments", "cmd_broken", "broken")))
    code, out, _ = run(capsys, "fake", "--x", "3")
    assert code == 7 and "x is 3" in out
    code, out, err = run(capsys, "broken")
    assert_clean_error(code, out, err, "PortAudio library not found")


# ------------------------------------------------------------------ renderer, stub engine
class StubEngine:
    """Records the absolute sample of every event; sounds until ``silent_after`` frames
    after the last note-off."""

    def __init__(self, silent_after=None):
        self.pos = 0
        self.seen = []
        self.silent_after = silent_after
        self.off_at = None

    def render(self, out, events):
        assert out.dtype == np.float32 and out.shape[1] == 2
        assert np.all(np.diff(events["offset"]) >= 0)
        assert np.all((events["offset"] >= 0) & (events["offset"] < out.shape[0]))
        for e in events:
            self.seen.append((self.pos + int(e["offset"]), int(e["status"]), int(e["data1"])))
            if e["status"] & 0xF0 == 0x80:
                self.off_at = self.pos + int(e["offset"])
        n = out.shape[0]
        t = self.pos + np.arange(n)
        loud = (self.off_at is None) | (t < (self.off_at or 0) + (self.silent_after or 1 << 40))
        out[:] = (0.5 * loud)[:, None]
        self.pos += n

    def is_silent(self, threshold_db=-90.0):
        return self.silent_after is not None and self.off_at is not None \
            and self.pos >= self.off_at + self.silent_after


def _events(times):
    ev = np.zeros(len(times), MIDI_EVENT_DTYPE)
    ev["time_s"] = times
    ev["status"] = [0x90] * (len(times) - 1) + [0x80]
    ev["data1"] = 60
    ev["data2"] = [100] * (len(times) - 1) + [0]
    return ev


@pytest.mark.parametrize("block", [1, 64, 65, 512, 8193])
def test_event_offsets_do_not_depend_on_block_size(block):
    sr = 1000
    ev = _events([0.0, 0.0004, 0.0015, 0.064, 0.065, 0.5, 1.2345])
    eng = StubEngine()
    out = render_midi(ev, eng, sr, block_size=block, tail=0.5)
    assert [s for s, _, _ in eng.seen] == [0, 0, 2, 64, 65, 500, 1234]
    assert out.shape == (1234 + 500, 2) and out.dtype == np.float32


def test_auto_tail_stops_when_silent_and_trims():
    sr = 1000
    eng = StubEngine(silent_after=300)
    out = render_midi(_events([0.0, 1.0]), eng, sr, block_size=128, tail="auto")
    assert out.shape[0] == 1000 + 300                 # trimmed to the last sound
    assert eng.pos < 1000 + 300 + 2 * 128             # stopped soon after


def test_auto_tail_is_capped():
    sr = 1000
    out = render_midi(_events([0.0, 1.0]), StubEngine(silent_after=None), sr, tail="auto")
    assert out.shape[0] == 1000 + AUTO_TAIL_MAX_S * sr


def test_real_file_events_map_to_samples(tiny_midi):
    ev = read_midi_file(tiny_midi)
    eng = StubEngine()
    render_midi(ev, eng, 48000, tail=0.0, block_size=100)
    expected = [round(t * 48000) for t in ev["time_s"] if round(t * 48000) < 36000]
    assert [s for s, _, _ in eng.seen] == expected     # the last event sits at the very end


def test_normalize_and_silence():
    a = np.array([[0.25, -0.5]], np.float32)
    assert normalize(a, -6.0) == pytest.approx(20 * np.log10(10 ** (-6 / 20) / 0.5))
    z = np.zeros((10, 2), np.float32)
    assert normalize(z) == 0.0 and np.all(z == 0)


# --------------------------------------------------------------------------- audio files
def test_write_audio_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "keep.wav"
    write_audio(target, np.zeros((100, 2)), SR, "PCM_16")
    before = target.read_bytes()

    def boom(self, data):
        raise RuntimeError("disk full (simulated)")
    monkeypatch.setattr(sf.SoundFile, "write", boom)
    with pytest.raises(PianosynthError, match="simulated"):
        write_audio(target, np.ones((100, 2)) * 0.1, SR, "PCM_16")
    assert files_in(tmp_path) == ["keep.wav"]
    assert target.read_bytes() == before


def test_write_audio_clips_integer_formats_and_keeps_float(tmp_path):
    a = np.array([[1.5, -2.0], [0.5, 0.0]], np.float32)
    assert write_audio(tmp_path / "i.wav", a, SR, "PCM_24") == 2
    back, _ = sf.read(str(tmp_path / "i.wav"))
    assert back[0, 0] == pytest.approx(1.0, abs=1e-6) and back[0, 1] == pytest.approx(-1.0)
    assert write_audio(tmp_path / "f.wav", a, SR, "FLOAT") == 0
    assert sf.read(str(tmp_path / "f.wav"))[0][0, 1] == -2.0


def test_output_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_audio(tmp_path / "p.wav", np.zeros((10, 2)), SR)
    finally:
        os.umask(old)
    assert (tmp_path / "p.wav").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name, subtype, ok", [("a.wav", None, True), ("a.WAV", "float", True),
                                               ("a.flac", "PCM_16", True),
                                               ("a.flac", "FLOAT", False), ("a.ogg", None, False),
                                               ("a", None, False), ("a.wav", "PCM_8", False)])
def test_check_output_path(tmp_path, name, subtype, ok):
    if ok:
        check_output_path(tmp_path / name, subtype)
    else:
        with pytest.raises(PianosynthError):
            check_output_path(tmp_path / name, subtype)
    assert files_in(tmp_path) == []


def test_cold_compile_shows_progress():
    """A cold kernel compile (about a minute) reports what it does and how long so far."""
    import time as _time
    from pianosynth.dsp.jit import compile_with_progress
    lines = []
    assert compile_with_progress(lambda: _time.sleep(0.35) or 7, say=lines.append,
                                 every_s=0.1) == 7
    assert "compiling the DSP kernels" in lines[0]
    assert sum("compiling ..." in t for t in lines) >= 2
    assert lines[-1].startswith("pianosynth: kernels compiled in")
