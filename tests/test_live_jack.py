"""``pianosynth play`` end to end on a real JACK server (dummy backend), plus the pieces.

The end-to-end test starts its own ``jackd --no-realtime -d dummy -r 48000 -p 256``, runs
``python -m pianosynth play --virtual`` as a subprocess, sends notes, chords and the sustain
pedal from this process through rtmidi's JACK API to ``pianosynth:midi_in`` and records the
output on the JACK graph.

How latency is measured (honestly, on one clock)
------------------------------------------------
The recorder is a JACK client in this process (``tests/jack_helpers.JackRecorder``, ctypes on
libjack). It stores the JACK frame time of every cycle it records, so each recorded sample
has a frame time. Right before each ``send_message`` this process reads JACK's frame clock
(``jack_frame_time``). Latency = onset frame in the recording - frame clock at the send: it
includes rtmidi's hand-over into JACK, JACK MIDI transport, the player's time stamping and
scheduling, the render and the audio graph up to the recorder. It does not include a sound
card's converter latency (the dummy backend has none). Onsets are found sample-accurately
as the first sample where the residual of a linear predictor fitted to the 30 ms before the
send jumps above the noise of that residual (a new note is what the past cannot predict).

Budget: ~11 s of playing (10-15 s is enough to see every case once; a 30 s version would not
fit the one-minute CI budget) + 10 s of empty-callback baseline + start-up: 35-45 s with a
warm numba cache on a shared two-core machine.
"""
from __future__ import annotations

import collections
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jack_helpers import JackRecorder, JackServer, jack_missing_reason, jack_ports, \
    jack_running  # noqa: E402

from pianosynth.engine.events import EVENT_DTYPE  # noqa: E402
from pianosynth.io.audio_out import BlockClock  # noqa: E402
from pianosynth.io.live import FileEvents  # noqa: E402
from pianosynth.io.midi_live import EventBlock, MidiEventQueue  # noqa: E402

try:
    from pianosynth.engine.core import target_f1_hz as _engine_target_f1_hz
except ImportError:  # pragma: no cover - the placeholder engine had no stretch
    _engine_target_f1_hz = None

REPO = Path(__file__).resolve().parents[1]
RATE = 48000
PERIOD = 256
#: seconds of empty-callback baseline (half before the player runs, half after)
BASELINE_S = 10.0
#: underflow rate of the empty callback above which the machine is too busy to judge the
#: player's dropouts (non-realtime JACK on shared cores: 0.1-1 % is usual)
NOISY_RATE = 0.02


def target_f1_hz(key: int) -> float:
    """Expected frequency of partial 1: the engine's own target (stretch included) if it
    exposes one, else 12-TET with A4 = 440 Hz."""
    if _engine_target_f1_hz is not None:
        return float(_engine_target_f1_hz(key))
    return 440.0 * 2.0 ** ((key - 69) / 12.0)


# ============================================================== pieces (no JACK needed)
def test_block_clock_ignores_late_callbacks():
    fs, n = 48000, 256
    clock = BlockClock(fs, window_s=0.5)
    rng = np.random.default_rng(1)
    t0 = 100.0
    for k in range(400):
        frame = k * n
        late = rng.uniform(0, 0.004) if k % 3 else 0.0
        due = clock.update(t0 + frame / fs + late, frame)
        if k > 3:
            assert abs(due - (t0 + frame / fs)) < 1e-9


def test_block_clock_follows_drift():
    fs, n = 48000.0, 256
    clock = BlockClock(fs, window_s=0.25)
    ratio = 1.0 + 200e-6                         # sound card 200 ppm slow vs perf_counter
    for k in range(2000):
        frame = k * n
        due = clock.update(5.0 + frame / fs * ratio, frame)
    assert abs(due - (5.0 + frame / fs * ratio)) < 0.0005


def test_queue_places_events_at_arrival_plus_constant_latency():
    fs, n = 48000.0, 256
    q = MidiEventQueue(latency_s=n / fs + 0.001)
    block = EventBlock(8)
    t_block = 10.0                               # frame 0 of this block is due at 10.0 s
    base = t_block - q.latency_s
    q.push(base + 0.5 / fs, 0x90, 60, 100)       # offset 0
    q.push(base + 100.5 / fs, 0x90, 64, 100)     # offset 100
    q.push(base + 255.5 / fs, 0x80, 60, 0)       # offset 255
    q.push(base + 256.5 / fs, 0x80, 64, 0)       # next block
    k = q.drain_into(block, 0, t_block, fs, n)
    assert k == 3
    assert list(block.offset[:3]) == [0, 100, 255]
    assert list(block.data1[:3]) == [60, 64, 60]
    assert len(q) == 1
    k = q.drain_into(block, 0, t_block + n / fs, fs, n)
    assert k == 1 and block.offset[0] == 0 and q.late == 0
    q.push(base, 0x90, 1, 1)                     # arrives after its block: late, offset 0
    k = q.drain_into(block, 0, t_block + 2 * n / fs, fs, n)
    assert k == 1 and block.offset[0] == 0 and q.late == 1


def test_queue_keeps_block_sorted_and_bounded():
    q = MidiEventQueue(latency_s=0.0)
    block = EventBlock(4)
    for t in (0.001, 0.0005, 0.002, 0.003, 0.0031, 0.0032):   # two producers interleaved
        q.push(t, 0x90, 60, 1)
    k = q.drain_into(block, 0, 0.0, 48000.0, 4800)
    assert k == 4 and np.all(np.diff(block.offset[:k]) >= 0)
    assert len(q) == 2                            # the rest waits for the next block


def test_file_events_block_by_block():
    ev = np.array([(0.0, 0x90, 60, 90), (0.01, 0x80, 60, 0), (0.0105, 0x90, 62, 80)],
                  dtype=[("time_s", "f8"), ("status", "u1"), ("data1", "u1"), ("data2", "u1")])
    fe = FileEvents(ev, 48000, lead_in_s=0.0)
    block = EventBlock(16)
    got = []
    frame = 0
    while not fe.done:
        k = fe.fill(block, 0, frame, 256)
        got += [(frame + int(o), int(s)) for o, s in zip(block.offset[:k], block.status[:k])]
        assert np.all((block.offset[:k] >= 0) & (block.offset[:k] < 256))
        frame += 256
    assert got == [(0, 0x90), (480, 0x80), (504, 0x90)]
    assert block.array.dtype == EVENT_DTYPE


# ============================================================== analysis helpers
def find_onset(x: np.ndarray, s: int, fs: int, order: int = 24, train_s: float = 0.03,
               pre_s: float = 0.005, post_s: float = 0.08) -> int | None:
    """First sample after ``s`` where something the past cannot predict starts.

    A linear predictor of ``order`` is fitted (least squares) to the ``train_s`` before
    ``s``; its residual over ``[s - pre_s, s + post_s)`` is compared with its largest value
    before ``s``. Returns the sample index, or None when nothing new starts.
    """
    a = s - int(train_s * fs)
    if a - order < 0 or s + int(post_s * fs) > len(x):
        return None
    seg = x[a - order:s].astype(np.float64)
    X = np.lib.stride_tricks.sliding_window_view(seg, order)[:-1]
    y = seg[order:]
    scale = max(float(np.max(np.abs(y))), 1e-12)
    coef = np.linalg.lstsq(X / scale, y / scale, rcond=None)[0]
    pre = int(pre_s * fs)
    seg2 = x[s - pre - order:s + int(post_s * fs)].astype(np.float64)
    X2 = np.lib.stride_tricks.sliding_window_view(seg2, order)[:-1]
    e = np.abs(seg2[order:] - X2 @ coef)
    noise = float(np.percentile(e[:pre], 90))    # robust to one glitch (xrun) before s
    thresh = max(10.0 * noise, 3e-4)
    hits = np.nonzero(e[pre:] > thresh)[0]
    return s + int(hits[0]) if len(hits) else None


def peak_hz(x: np.ndarray, fs: int, f_target: float, cents: float = 40.0) -> tuple[float, float]:
    """Frequency (Hz) and level (dB) of the strongest peak within ``cents`` of ``f_target``
    (Blackman-Harris window, 16x zero padding, parabolic interpolation of the log
    magnitude)."""
    from scipy.signal.windows import blackmanharris
    w = blackmanharris(len(x))
    nfft = 16 * (1 << int(math.ceil(math.log2(len(x)))))
    mag = np.abs(np.fft.rfft(x * w, nfft))
    f = np.arange(len(mag)) * fs / nfft
    lo, hi = f_target * 2 ** (-cents / 1200), f_target * 2 ** (cents / 1200)
    band = np.nonzero((f >= lo) & (f <= hi))[0]
    k = int(band[np.argmax(mag[band])])
    a, b, c = np.log(mag[k - 1:k + 2] + 1e-30)
    d = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    level = 20 * np.log10(mag[k] / np.sum(w) * 2 + 1e-30)
    return float((k + d) * fs / nfft), float(level)


def _longest_valid_run(valid: np.ndarray, a: int, b: int) -> tuple[int, int]:
    """The longest stretch of ``valid`` samples inside ``[a, b)``."""
    v = valid[a:b]
    if v.all():
        return a, b
    edges = np.flatnonzero(np.diff(np.r_[0, v.astype(np.int8), 0]))
    runs = edges.reshape(-1, 2)
    if len(runs) == 0:
        return a, a
    k = int(np.argmax(runs[:, 1] - runs[:, 0]))
    return a + int(runs[k, 0]), a + int(runs[k, 1])


def band_level_db(x: np.ndarray, fs: int, f: float) -> float:
    """Level (dB) of the component at ``f`` (Hann-windowed DFT at ``f``)."""
    n = len(x)
    w = np.hanning(n)
    ph = np.exp(-2j * np.pi * f * np.arange(n) / fs)
    return float(20 * np.log10(2 * abs(np.sum(x * w * ph)) / np.sum(w) + 1e-12))


def cents(f: float, ref: float) -> float:
    return 1200.0 * math.log2(f / ref)


# ============================================================== the player as a process
@functools.lru_cache(maxsize=1)
def _play_command_cached() -> tuple[str, ...]:
    return tuple(_play_command_uncached())


def _play_command() -> list[str]:
    return list(_play_command_cached())


def _play_command_uncached() -> list[str]:
    """``python -m pianosynth play`` once the command line registers it, else the module."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "pianosynth", "play", "--help"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=60)
    if r.returncode == 0 and "--virtual" in r.stdout:
        return [sys.executable, "-m", "pianosynth", "play"]
    return [sys.executable, "-m", "pianosynth.io.live", "play"]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PIANOSYNTH_STATS_JSON", None)
    return env


_EMPTY_CALLBACK = r"""
import sys, time, rtmidi, sounddevice as sd
midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="pianosynth")
midi.open_virtual_port("midi_in")
n = [0, 0]
def cb(out, frames, t, status):
    n[0] += 1
    if status.output_underflow:
        n[1] += 1
    out.fill(0)
with sd.OutputStream(samplerate=%d, blocksize=0, channels=2, dtype="float32", callback=cb):
    time.sleep(%f)
sd._terminate()
midi.close_port()
print(n[0], n[1])
"""


def run_empty_callback_baseline(seconds: float) -> tuple[int, int]:
    """(callbacks, underflows) of an empty PortAudio callback on the JACK server, next to an
    idle rtmidi JACK input client: the same JACK clients as the player, doing nothing.

    Every JACK xrun is reported to every client, and on this kind of machine (non-realtime
    JACK, two shared cores) most xruns are a client thread the OS did not wake in time, so
    the noise grows with the number of clients in the graph: the baseline has as many.
    """
    r = subprocess.run([sys.executable, "-c", _EMPTY_CALLBACK % (RATE, seconds)],
                       capture_output=True, text=True, timeout=seconds + 60, env=_env())
    assert r.returncode == 0, r.stderr
    calls, under = map(int, r.stdout.split()[-2:])
    return calls, under


class LogFile:
    """The player's stderr, written to a file and searched while it runs."""

    def __init__(self, path: Path):
        self.path = path

    def text(self) -> str:
        return self.path.read_text(errors="replace") if self.path.exists() else ""

    def wait_for(self, needle: str, timeout: float, proc=None) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if needle in self.text():
                return
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not seen in the player's output:\n{self.text()}")


# ============================================================== clear errors (no server)
def test_no_audio_device_is_a_clear_error(tmp_path):
    why = jack_missing_reason()
    if why is None and jack_running():
        pytest.skip("a JACK server is running: there is an audio device")
    probe = subprocess.run(
        [sys.executable, "-c", "import sounddevice as sd; "
         "print(sum(d['max_output_channels'] > 0 for d in sd.query_devices()))"],
        capture_output=True, text=True, timeout=60)
    if probe.returncode == 0 and probe.stdout.strip() not in ("", "0"):
        pytest.skip("this machine has an audio output device")
    r = _run_play(["--duration", "1"])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "pianosynth: error:" in r.stderr and "no audio output device" in r.stderr


# ============================================================== fixtures
@pytest.fixture(scope="module")
def jack_server(tmp_path_factory):
    why = jack_missing_reason()
    if why:
        pytest.skip(f"needs a JACK server: {why}")
    if jack_running():
        pytest.skip("a JACK server is already running; these tests start their own dummy one")
    log = tmp_path_factory.mktemp("jack") / "jackd.log"
    server = JackServer(RATE, PERIOD, log_path=str(log))
    server.start()
    yield server
    server.stop()


def _rtmidi_jack():
    rtmidi = pytest.importorskip("rtmidi")
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("python-rtmidi built without JACK")
    return rtmidi


# ============================================================== end to end
#: whole runs of the end-to-end check before it is judged. Its figures (dropouts, onsets,
#: latency) are timing on shared, non-realtime cores, where a burst of load from elsewhere can
#: spoil one run. A defect of the player fails every run; noise does not.
ATTEMPTS = 3


def test_play_live_end_to_end(jack_server, tmp_path):
    rtmidi = _rtmidi_jack()
    failures, skips = [], []
    for attempt in range(1, ATTEMPTS + 1):
        work = tmp_path / f"attempt{attempt}"
        work.mkdir()
        rec = JackRecorder(f"psrec{attempt}", channels=2, max_seconds=40.0)
        try:
            _end_to_end(rtmidi, rec, jack_server, work)
            print(f"end to end: passed on attempt {attempt} of {ATTEMPTS}")
            return
        except AssertionError as exc:
            failures.append(f"attempt {attempt}: {exc}")
            print(f"end to end: attempt {attempt} failed:\n{exc}")
        except pytest.skip.Exception as exc:
            skips.append(f"attempt {attempt}: {exc}")
            print(f"end to end: attempt {attempt} inconclusive: {exc}")
        finally:
            rec.close()
        assert jack_server.alive, "the JACK server died during the run"
    if failures:
        pytest.fail("every run of the end-to-end check failed or was inconclusive:\n"
                    + "\n\n".join(failures + skips), pytrace=False)
    pytest.skip("; ".join(skips))


def _end_to_end(rtmidi, rec, server, tmp_path):
    # 1. baseline: an empty callback, same server, same graph (recorder active); half of it
    #    before the player runs and half after, the noise of this machine comes in bursts
    base = [run_empty_callback_baseline(BASELINE_S / 2)]

    # 2. the player
    stats_path = tmp_path / "stats.json"
    log = LogFile(tmp_path / "play.log")
    cmd = _play_command() + ["--virtual", "--midi-in", "psfeed", "--stats-json",
                             str(stats_path)]
    with open(log.path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=err, stderr=err)
    try:
        log.wait_for("Ctrl-C stops", timeout=180, proc=proc)   # cold numba cache: compiles
        ports = jack_ports()
        assert "pianosynth:midi_in" in ports, ports
        outs = [p for p in ports if p.startswith("PortAudio") and ":out_" in p]
        assert len(outs) == 2, ports
        rec.connect(outs)
        msgs, notes, steady = _perform(rtmidi, rec, log, proc)

        # 3. SIGTERM: fade, close, exit 0
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    base.append(run_empty_callback_baseline(BASELINE_S / 2))
    base_calls = sum(b[0] for b in base)
    base_under = sum(b[1] for b in base)
    text = log.text()
    assert rc == 0, text
    assert "Traceback" not in text, text
    assert text.split("is back")[0].count("disappeared") == 1, text     # warned once
    stats = json.loads(stats_path.read_text())

    # 4. the server is healthy afterwards, and the player's ports are gone
    assert server.alive
    after = jack_ports()
    assert "pianosynth:midi_in" not in after and not any(p.startswith("PortAudio") for p in after)

    # 5. analysis on the JACK frame clock
    data, first_frame, missing = rec.recorded()
    valid = rec.valid_mask()
    x = data.mean(axis=0).astype(np.float64)
    fs = rec.sample_rate
    period_ms = 1000.0 * rec.period / fs

    def idx(frame):
        return int((frame - first_frame) % 2**32)

    # the engine's own onset delay (hammer contact, string travel to the bridge): the same
    # messages rendered offline at their send frames, the same onset detector
    ref = _render_reference(msgs, idx, len(x), fs)
    np.savez(tmp_path / "recording.npz", x=x, ref=ref, valid=valid,
             notes=np.array([idx(n[0]) for n in notes]))            # for a look after a failure
    report = [f"player stats: {json.dumps(stats)}",
              f"baseline: {base_calls} callbacks, {base_under} underflows; {missing} frames "
              f"not recorded (JACK xruns; recorder realtime: {rec.realtime})"]
    # note-ons that reached the player (JACK drops the MIDI of a cycle lost to an xrun)
    got = collections.Counter(m[1] for m in stats.get("midi_recent", [])
                              if m[0] & 0xF0 == 0x90 and m[2] > 0)
    raw, system, onsets, missed, unmeasured = [], [], [], [], []
    # a message plays the player's fixed latency after it arrived (less the clock estimate's
    # error, under a millisecond, and the onset detector's): an "onset" 2.5 ms earlier than
    # that is a dropout's click, not the note
    floor = (stats.get("midi_latency_s", 0.0) - 0.0025) * fs
    for i, (f_on, f_off, kind, keys) in enumerate(notes):
        s = idx(f_on)
        if "midi_recent" in stats and not all(got[k] > 0 for k in keys):
            unmeasured.append(i)
            report.append(f"{kind:8s} keys {keys}: note-on never reached the player (lost "
                          "in the JACK graph)")
            onsets.append(s + int(np.median([o - idx(n[0]) for o, n in zip(onsets, notes)]
                                            or [0])))
            continue
        for k in keys:
            got[k] -= 1
        end = min(idx(notes[i + 1][0]) if i + 1 < len(notes) else len(x), idx(f_off))
        own = find_onset(ref, s, fs)
        own = 0 if own is None else own - s
        if not valid[s - int(0.035 * fs):s + int(0.08 * fs)].all():
            onset = None                 # a gap where the onset is: not measurable
            unmeasured.append(i)
            report.append(f"{kind:8s} keys {keys}: onset not measurable (gap in the recording)")
        else:
            onset = find_onset(x, s, fs)
            if onset is not None and onset - s - own < floor:
                onset = None             # earlier than the player can be: a glitch, not a note
            if onset is None:
                missed.append((kind, keys))
                report.append(f"{kind:8s} keys {keys}: no clear onset")
        if onset is None:                # check the pitch after the usual latency
            onset = s + int(np.median([o - idx(n[0]) for o, n in zip(onsets, notes)] or [0]))
        else:
            raw.append(1000.0 * (onset - s) / fs)
            system.append(1000.0 * (onset - s - own) / fs)
        onsets.append(onset)
        a0 = onset + int(0.03 * fs)        # after the attack, until the key-up takes effect
        a1 = min(onset + int(0.45 * fs), onset + (end - s))
        a0, a1 = _longest_valid_run(valid, a0, a1)
        if a1 - a0 < int(0.3 * fs):      # below 0.3 s partial 1 is not resolved to 2 cents
            unmeasured.append(i)
            report.append(f"{kind:8s} keys {keys}: pitch not measurable (gaps in the recording)")
            continue
        seg = x[a0:a1]
        for key in keys:
            ft = target_f1_hz(key)
            fm, lev = peak_hz(seg, fs, ft)
            err = cents(fm, ft)
            # pedal down: every string of the (sympathetic) engine rings along, the partials
            # of A2 and D2 sit within a few cents of A3's partial 1 and pull the peak. The
            # offline render of the same messages, same window, says where it must be.
            r0 = a0 - (onset - s) + own
            f_ref, _ = peak_hz(ref[r0:r0 + (a1 - a0)], fs, ft)
            err_ref = cents(fm, f_ref)
            report.append(f"{kind:8s} key {key:3d}: onset {1000 * (onset - s) / fs:5.2f} ms "
                          f"after the send (engine's own {1000 * own / fs:4.2f} ms), "
                          f"partial 1 {fm:8.3f} Hz "
                          f"(target {ft:8.3f}, {err:+.2f} cents; offline {err_ref:+.2f} "
                          f"cents from it), {lev:.1f} dB")
            if kind == "pedal":
                assert abs(err_ref) <= 2.0, "\n".join(report)
            else:
                assert abs(err) <= 2.0, "\n".join(report)
            assert lev > -60.0, "\n".join(report)
    print("\n".join(report))

    # every note in order, none before its message. A dropout near a send can hide the
    # onset or fake an early one; with dropouts in the run a quarter of the notes may go
    # without a latency figure (their pitch was still checked)
    assert len(missed) <= (max(2, len(notes) // 4) if stats["underflows"] else 0), missed
    # a gap in the recording (the recorder's thread not run in time, or a cycle the server
    # skipped) hides a note from the measurement, it says nothing about the player; with
    # more than half of the notes hidden the run cannot judge anything
    hidden = len(set(unmeasured))
    if hidden > len(notes) // 2:
        pytest.skip(f"inconclusive: this machine is too busy ({missing} frames of the "
                    f"recording lost, {hidden} of {len(notes)} notes hidden)")
    assert all(np.diff(onsets) > 0)
    assert min(raw) > 0.0
    med = float(np.median(system))
    print(f"latency send -> onset, less the engine's own onset delay: median {med:.2f} ms, "
          f"max {max(system):.2f} ms (raw: median {np.median(raw):.2f} ms, max {max(raw):.2f} "
          f"ms); limit {2 * period_ms + 1:.2f} ms (2 periods + 1 ms)")
    assert med <= 2 * period_ms + 1.0
    assert max(system) <= 3 * period_ms + 2.0

    # sustain pedal: a key released under the pedal rings on
    def decay_db(kind):
        f_on, f_off, _, keys = next(n for n in notes if n[2] == kind)
        ft = target_f1_hz(keys[0])
        wa = slice(idx(f_on) + int(0.03 * fs), idx(f_on) + int(0.08 * fs))
        wb = slice(idx(f_off) + int(0.3 * fs), idx(f_off) + int(0.35 * fs))
        if not (valid[wa].all() and valid[wb].all()):
            return None
        return band_level_db(x[wb], fs, ft) - band_level_db(x[wa], fs, ft)

    d_free, d_pedal = decay_db("nopedal"), decay_db("pedal")
    if d_free is None or d_pedal is None:
        print("sustain pedal: not measurable (gap in the recording)")
    else:
        print(f"level 0.3 s after key-up vs attack: {d_free:.1f} dB without pedal, "
              f"{d_pedal:.1f} dB with pedal")
        assert d_pedal >= d_free - 1.0
        if d_free < -20.0:               # the engine damps released keys: the pedal must lift
            assert d_pedal > d_free + 10.0

    # underflows while playing (the steady part: scale, chords, pedal) no more than the empty
    # callback's rate (the worse of the two halves, scaled to the same length) + 1
    t0, t1 = steady
    played = sum(1 for t in stats["underflow_times"] if t0 <= t <= t1)
    calls = (t1 - t0) * fs / rec.period
    rate = max(u / max(c, 1) for c, u in base)
    allowed = rate * calls + 1.0
    if played > allowed:
        # the noise of a shared machine comes in bursts of seconds: before calling the player
        # guilty, measure the empty callback once more, as long as the playing
        base.append(run_empty_callback_baseline(t1 - t0))
        rate = max(u / max(c, 1) for c, u in base)
        allowed = rate * calls + 1.0
    print(f"underflows while playing: player {played} in {calls:.0f} callbacks "
          f"({stats['underflows']} in all {stats['callbacks']}, start, port changes and stop "
          "included); empty callback " + ", ".join(f"{u} in {c}" for c, u in base) +
          f"; allowed {allowed:.1f}")
    if rate > NOISY_RATE and played > allowed:
        # the empty callback itself dropped more than 2 % of its blocks: other programs own
        # this machine right now and the comparison says nothing about the player
        print(f"underflow comparison inconclusive: the empty callback alone had "
              f"{100 * rate:.1f} % underflows")
    else:
        assert played <= allowed
    # a message reaches the audio thread after its block started only next to a dropout (the
    # clock restarts from a late callback): at most a chord's worth per underflow
    assert stats["midi_late"] <= 3 * stats["underflows"], stats


def _perform(rtmidi, rec, log, proc):
    """Play the test piece into ``pianosynth:midi_in`` (and a port that comes and goes).

    Returns
    -------
    msgs : list of (jack frame time, [status, data1, data2])
        Every message, stamped with JACK's frame clock right before it was sent.
    notes : list of (frame on, frame off, kind, keys)
        The notes and chords to look for in the recording.
    steady : [t0, t1]
        perf_counter() at the start and end of the playing with a steady JACK graph (before
        the port that comes and goes: adding and removing JACK clients and connections
        makes the server skip cycles, which is not the player's doing).
    """
    def sender():
        m = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="pssend")
        m.open_port([i for i, p in enumerate(m.get_ports()) if "pianosynth:midi_in" in p][0])
        return m

    def feeder():
        m = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="psfeed")
        m.open_virtual_port("out")
        return m

    mo = sender()
    msgs, notes = [], []

    def send(port, *messages):
        f = rec.frame_time()
        for m in messages:
            port.send_message(m)
            msgs.append((f, m))
        return f

    def play(keys, vel, hold, kind, port=mo):
        f_on = send(port, *[[0x90, k, vel] for k in keys])
        time.sleep(hold)
        f_off = send(port, *[[0x80, k, 0] for k in keys])
        notes.append((f_on, f_off, kind, tuple(keys)))

    rec.start()
    time.sleep(0.3)
    steady = [time.perf_counter()]
    for key, vel in zip((60, 62, 64, 65, 67, 69, 71, 72), (90, 70, 100, 80, 110, 95, 75, 105)):
        play([key], vel, 0.4, "note")                        # a scale through A4
        time.sleep(0.1)
    for chord in ((60, 64, 67), (65, 69, 72), (67, 71, 74)):
        play(chord, 90, 0.55, "chord")                       # three messages back to back
        time.sleep(0.15)
    play([57], 100, 0.4, "nopedal")                          # released without the pedal
    time.sleep(0.65)
    send(mo, [0xB0, 64, 127])
    time.sleep(0.05)
    play([57], 100, 0.4, "pedal")                            # released under the pedal
    time.sleep(0.7)
    send(mo, [0xB0, 64, 0])
    time.sleep(0.3)
    steady.append(time.perf_counter())
    # a port that goes away and comes back (the player runs with --midi-in psfeed)
    feed = feeder()
    log.wait_for("MIDI input: psfeed:out", timeout=5, proc=proc)
    play([76], 100, 0.4, "feed", feed)
    time.sleep(0.1)
    feed.close_port()
    feed.delete()
    log.wait_for("disappeared", timeout=5, proc=proc)
    feed = feeder()
    log.wait_for("is back: reconnected", timeout=5, proc=proc)
    play([79], 100, 0.4, "feed", feed)
    time.sleep(0.5)
    rec.stop()
    for port in (feed, mo):
        port.close_port()
        port.delete()
    return msgs, notes, steady


def _render_reference(msgs, idx, n, fs) -> np.ndarray:
    """The messages rendered offline by the player's engine (default preset) at their send
    frames: what the recording would be with zero latency."""
    from pianosynth.engine.core import Engine
    from pianosynth.engine.events import make_events
    try:
        from pianosynth.presets import default_preset
        p = default_preset()
        engine = Engine(p.settings, fs, key_overrides=p.keys)
    except ImportError:  # pragma: no cover
        engine = Engine(None, fs)
    ev = make_events([(idx(f), *m) for f, m in msgs if idx(f) < n])
    out = np.zeros((n, 2), np.float32)
    block = 256
    for b in range(0, n, block):
        sel = ev[(ev["offset"] >= b) & (ev["offset"] < b + block)].copy()
        sel["offset"] -= b
        engine.render(out[b:b + block], sel)
    return out.mean(axis=1).astype(np.float64)


# ============================================================== clear errors
def _run_play(args, timeout=60):
    return subprocess.run(_play_command() + args, cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_sample_rate_rejected_clearly(jack_server):
    r = _run_play(["--sample-rate", "44100", "--duration", "1"])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "pianosynth: error:" in r.stderr and "44100" in r.stderr and "48000" in r.stderr


def test_devices_lists_jack_output_and_midi(jack_server):
    r = subprocess.run([sys.executable, "-m", "pianosynth.io.live", "devices"], cwd=REPO,
                       env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "JACK Audio Connection Kit" in r.stdout and "MIDI inputs" in r.stdout
    assert "*" in r.stdout


def test_play_midi_file_then_stop_by_itself(jack_server, tmp_path):
    mido = pytest.importorskip("mido")
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr += [mido.Message("note_on", note=60, velocity=90, time=0),
           mido.Message("note_on", note=64, velocity=90, time=240),
           mido.Message("note_off", note=60, velocity=0, time=240),
           mido.Message("note_off", note=64, velocity=0, time=0)]
    path = tmp_path / "two.mid"
    mid.save(path)
    stats = tmp_path / "stats.json"
    r = _run_play(["--midi-file", str(path), "--stats-json", str(stats)], timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    s = json.loads(stats.read_text())
    assert s["stop_reason"] == "end of file" and s["file_events_played"] == 4
