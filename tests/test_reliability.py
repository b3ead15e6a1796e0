"""Reliability: failures mid-write or mid-render lose nothing; old presets load; a soak.

- Presets are saved atomically: an exception (or SIGKILL) in the middle of a save leaves the
  old file as it was.
- Preset schema: a version-1 file (frozen below, as version 1 writes it) loads; a file without
  ``schema_version`` loads with a warning; a newer version is refused with one clear line.
- Render output: written under a temporary name and renamed when complete. A failure
  mid-render (engine raising after a few blocks, Ctrl-C, out of memory, disk full) or
  mid-write, or SIGKILL, leaves no partial output and an existing output file untouched.
- Soak (CI version of ``scripts/soak.py``): 30 s of the real pieces, offline: RSS growth
  <= 5 %, output finite, no voice left in silence, silence CPU <= 5 % of a core.
"""
import errno
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mido
import numpy as np
from jack_helpers import cpu_seconds
import pytest
import soundfile as sf

from pianosynth import presets
from pianosynth.cli import main
from pianosynth.engine.core import Engine
from pianosynth.engine.params import PARAMETERS, SCHEMA_VERSION
from pianosynth.errors import PianosynthError
from pianosynth.presets import Preset, load_preset, save_preset

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pianosynth" / "data" / "scn15_7.mid"
SR = 44100


def files_in(folder) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ------------------------------------------------------------------------ atomic presets
OLD = Preset(name="old", settings={"a4_hz": 441.0, "polyphony": 32}, keys={60: {"f0_hz": 261.0}})
NEW = Preset(name="new", settings={p.name: (int(p.max) if p.integer else p.max)
                                   for p in PARAMETERS}, description="x" * 5000)


@pytest.fixture
def saved(tmp_path):
    target = save_preset(OLD, tmp_path / "p.toml")
    return target, target.read_bytes()


def test_preset_failure_at_rename_keeps_old_file(saved, monkeypatch):
    target, before = saved

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(presets.os, "replace", no_space)
    with pytest.raises(PianosynthError, match="No space left"):
        save_preset(NEW, target)
    assert target.read_bytes() == before
    assert files_in(target.parent) == ["p.toml"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError(errno.EIO, "I/O error")])
def test_preset_exception_mid_write_keeps_old_file(saved, monkeypatch, exc):
    """The temporary file is half written when the exception comes."""
    target, before = saved
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, text):
            self.f.write(text[:len(text) // 2])
            self.f.flush()
            raise exc

    monkeypatch.setattr(presets.os, "fdopen", lambda fd, *a, **k: HalfWriter(real_fdopen(fd, *a, **k)))
    with pytest.raises(PianosynthError if isinstance(exc, OSError) else KeyboardInterrupt):
        save_preset(NEW, target)
    assert target.read_bytes() == before
    assert load_preset(target) == OLD
    assert files_in(target.parent) == ["p.toml"]


_SAVER = textwrap.dedent("""
    import os, sys, time
    from pianosynth.presets import Preset, save_preset
    from pianosynth.engine.params import PARAMETERS
    target, mode = sys.argv[1], sys.argv[2]
    new = Preset(name="new", settings={p.name: (int(p.max) if p.integer else p.max)
                                       for p in PARAMETERS}, description="x" * 5000)
    old = Preset(name="old", settings={"a4_hz": 441.0, "polyphony": 32},
                 keys={60: {"f0_hz": 261.0}})
    if mode == "stall":           # the data is in the temporary file, not yet renamed
        real_fsync = os.fsync
        def stall(fd):
            real_fsync(fd)
            open(target + ".ready", "w").close()
            time.sleep(60)
        os.fsync = stall
        save_preset(new, target)
    else:                         # save old and new in turns until killed
        open(target + ".ready", "w").close()
        while True:
            save_preset(new, target)
            save_preset(old, target)
""")


def _start_saver(target: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(target), mode], env=_env(),
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = Path(str(target) + ".ready")
    t0 = time.monotonic()
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() - t0 < 30, "saver did not start"
        time.sleep(0.01)
    ready.unlink()
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stderr.close()


def test_preset_killed_mid_write_keeps_old_file(saved):
    target, before = saved
    proc = _start_saver(target, "stall")
    _kill(proc)
    assert target.read_bytes() == before
    assert load_preset(target) == OLD
    # SIGKILL cannot clean up: the hidden temporary file may stay, never the target name
    assert all(n == "p.toml" or (n.startswith(".p.toml.") and n.endswith(".tmp"))
               for n in files_in(target.parent))


def test_preset_killed_at_random_moments_is_always_whole(saved):
    target, _ = saved
    rng = np.random.default_rng(1)
    proc = _start_saver(target, "loop")
    try:
        for _ in range(8):
            time.sleep(float(rng.uniform(0.005, 0.05)))
            proc.send_signal(signal.SIGSTOP)          # freeze it anywhere in a save
            try:
                assert load_preset(target) in (OLD, NEW)
            finally:
                proc.send_signal(signal.SIGCONT)
    finally:
        _kill(proc)
    assert load_preset(target) in (OLD, NEW)


# ------------------------------------------------------------------------- preset schema
#: a preset as pianosynth with schema_version 1 writes it (frozen: must keep loading).
V1_PRESET = """\
# pianosynth preset (load with: pianosynth render IN.mid --preset FILE)
schema_version = 1
name = "hall v1"
description = "written by schema version 1"

[parameters]
# tuning
a4_hz = 442.0                    # 400 to 480 Hz: Reference pitch of A4.
stretch_scale = 1.2              # 0 to 2: Scale of the Railsback stretch curve.
# hammer
felt_stiffness_scale = 1.5       # 0.1 to 10: Scale of felt stiffness K.
# string
t60_scale = 0.8                  # 0.05 to 4: Scale of the string T60 at f0.
resonators_on = 1                # 0 to 1: Resonator bank on/off.
resonator_count = 6              # 0 to 10: Resonators per key.
# output
master_gain_db = -3.0            # -60 to 12 dB: Master volume.
polyphony = 48                   # 1 to 256 voices

[keys.60]
f0_hz = 261.7                    # 20 to 5000 Hz
t60_f0_s = 14.0                  # 0.05 to 120 s

[keys.21]
inharmonicity_b = 0.0003         # 0 to 0.05
"""


def test_version_1_preset_loads(tmp_path):
    path = tmp_path / "hall.toml"
    path.write_text(V1_PRESET)
    p = load_preset(path)
    assert p.warnings == []
    assert p.name == "hall v1"
    assert p.settings == {"a4_hz": 442.0, "stretch_scale": 1.2, "felt_stiffness_scale": 1.5,
                          "t60_scale": 0.8, "resonators_on": 1, "resonator_count": 6,
                          "master_gain_db": -3.0, "polyphony": 48}
    assert p.keys == {21: {"inharmonicity_b": 0.0003}, 60: {"f0_hz": 261.7, "t60_f0_s": 14.0}}
    # and re-saved by this version, it reads back the same
    assert load_preset(save_preset(p, tmp_path / "again.toml")) == p


def test_preset_without_schema_version_loads_with_a_warning(tmp_path, capsys):
    path = tmp_path / "old.toml"
    path.write_text(V1_PRESET.replace("schema_version = 1\n", ""))
    p = load_preset(path)
    assert p.settings["a4_hz"] == 442.0
    assert len(p.warnings) == 1 and "schema_version" in p.warnings[0]
    assert main(["presets", "--check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "ok" in out
    assert err.startswith("pianosynth: warning: ") and "schema_version = 1" in err


def test_newer_schema_version_is_refused_with_one_clear_line(tmp_path, capsys):
    path = tmp_path / "future.toml"
    path.write_text(V1_PRESET.replace("schema_version = 1",
                                      f"schema_version = {SCHEMA_VERSION + 1}"))
    with pytest.raises(PianosynthError, match=f"schema_version {SCHEMA_VERSION + 1} is newer"):
        load_preset(path)
    assert main(["presets", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pianosynth: error: ")
    assert "upgrade pianosynth" in lines[0] and "Traceback" not in err


# -------------------------------------------------------------------- atomic render output
@pytest.fixture
def short_midi(tmp_path):
    """5 s of notes (5.5 s with the tail: four chunks of the audio writer)."""
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    tr = mido.MidiTrack()
    for k in (48, 55, 60, 64, 67):
        tr += [mido.Message("note_on", note=k, velocity=90, time=0),
               mido.Message("note_off", note=k, time=960)]
    mid.tracks.append(tr)
    path = tmp_path / "in" / "short.mid"
    path.parent.mkdir()
    mid.save(path)
    return path


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def _render_argv(src, out):
    return ["render", str(src), "-o", str(out), "--sample-rate", str(SR), "--tail", "0.5",
            "--block-size", "256", "-q"]


def _fail_after(n_calls: int, exc: BaseException, real):
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise exc
        return real(*args, **kwargs)
    return wrapper, calls


@pytest.mark.parametrize("exc, code", [(RuntimeError("engine bug (simulated)"), None),
                                       (KeyboardInterrupt(), 130),
                                       (MemoryError(), 2),
                                       (OSError(errno.ENOSPC, "No space left on device"), 2)],
                         ids=["bug", "ctrl-c", "memory", "disk-full"])
@pytest.mark.parametrize("existing", [True, False], ids=["existing-output", "new-output"])
def test_failure_mid_render_leaves_no_partial_output(short_midi, out_dir, monkeypatch, capsys,
                                                     exc, code, existing):
    out = out_dir / "piece.wav"
    if existing:
        sf.write(out, np.full((1000, 2), 0.25), SR, subtype="PCM_16")
        os.utime(out, (1_000_000_000, 1_000_000_000))
        before = out.read_bytes()
    wrapper, calls = _fail_after(5, exc, Engine.render)
    monkeypatch.setattr(Engine, "render", wrapper)
    if code is None:                                  # a bug keeps its traceback
        with pytest.raises(type(exc)):
            main(_render_argv(short_midi, out))
    else:
        assert main(_render_argv(short_midi, out)) == code
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert calls["n"] == 6                            # it failed in the middle, as planned
    if existing:
        assert files_in(out_dir) == ["piece.wav"]
        assert out.read_bytes() == before
        assert out.stat().st_mtime == 1_000_000_000
    else:
        assert files_in(out_dir) == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space")],
                         ids=["ctrl-c", "disk-full"])
def test_failure_mid_write_leaves_old_output(short_midi, out_dir, monkeypatch, exc):
    """The audio writer fails after its first chunk has gone to the temporary file."""
    out = out_dir / "piece.wav"
    sf.write(out, np.full((1000, 2), 0.25), SR, subtype="PCM_16")
    before = out.read_bytes()
    wrapper, calls = _fail_after(1, exc, sf.SoundFile.write)
    monkeypatch.setattr(sf.SoundFile, "write", wrapper)
    code = main(_render_argv(short_midi, out))
    assert code == (130 if isinstance(exc, KeyboardInterrupt) else 2)
    assert calls["n"] == 2
    assert files_in(out_dir) == ["piece.wav"]
    assert out.read_bytes() == before


def test_render_killed_leaves_old_output(out_dir):
    """SIGKILL while the demo piece renders (2 min of music): the old file stays."""
    out = out_dir / "demo.wav"
    sf.write(out, np.full((1000, 2), 0.25), SR, subtype="PCM_16")
    before = out.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "pianosynth", *_render_argv(DEMO, out)],
                            env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # kill once it has used 2.5 s of CPU (a warm start-up takes ~1.3 s, the render
        # ~3.5 s): a fixed sleep raced the render on a fast machine
        deadline = time.monotonic() + 60.0
        while (cpu_seconds(proc.pid) or 0.0) < 2.5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the render ended before it could be killed"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert out.read_bytes() == before
    assert all(n == "demo.wav" or n.startswith(".demo.wav.") for n in files_in(out_dir))


# -------------------------------------------------------------------------------- soak
def _load_soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = mod                         # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_soak_30_seconds(shared_data):
    """30 s of audio: the first 5 s of each real piece, in a loop (offline, not paced)."""
    soak = _load_soak()
    res = soak.soak(minutes=0.5, sample_rate=SR, block_size=256, segment_s=5.0, settle_s=5.0,
                    silence_s=3.0)
    print("\n" + soak.report(res))
    assert res.audio_s == pytest.approx(30.0, abs=0.01)
    assert res.loops > 1.5 and res.notes > 30
    assert res.nonfinite_out == 0 and res.nonfinite_pre == 0
    assert 0.01 < res.peak <= 1.0
    assert res.rss_growth <= 0.05, res.rss_trace_mb
    assert res.voices_in_silence == 0
    assert res.silence_cpu_per_s <= 0.05
    assert res.silence_cpu_per_s < res.playing_cpu_per_s
    assert res.ok, res.checks
