"""MIDI Tuning Standard SysEx, live (issue 7): ``play`` retunes keys without touching the audio
thread's timing.

- In process: :class:`pianosynth.io.live.MtsTuner` decodes queued SysEx, designs the new key
  table off the audio thread and leaves it for the block loop, which installs it at a block
  start (one reference swap); the engine's table object changes only there.
- On JACK: ``pianosynth play --virtual`` receives the single-note tuning change A4 = 445 Hz,
  then an A4: partial 1 of the recording within 2 cents of 445 Hz (MTS gives the frequency of
  partial 1 itself, stretch included).
"""
from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import os

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jack_helpers import REPO, JackRecorder, LogTail, NamedJackServer, \
    jack_missing_reason, player_env, unique_server_name  # noqa: E402

from pianosynth.io.mts import encode_single_note_tuning  # noqa: E402

#: live stress checks (MIDI flood, soak, MTS on JACK): minutes of timing on a real server,
#: flaky on shared CI cores; run with PIANOSYNTH_STRESS_TESTS=1 (and the scripts/ versions)
pytestmark = pytest.mark.skipif(not os.environ.get("PIANOSYNTH_STRESS_TESTS"),
                                reason="live stress test: set PIANOSYNTH_STRESS_TESTS=1")


RATE, PERIOD = 48000, 256


def _peak_hz(x: np.ndarray, fs: int, f_target: float, cents: float = 60.0) -> float:
    w = np.blackman(len(x))
    nfft = 16 * (1 << int(math.ceil(math.log2(len(x)))))
    mag = np.abs(np.fft.rfft(x * w, nfft))
    f = np.arange(len(mag)) * fs / nfft
    band = np.nonzero((f >= f_target * 2 ** (-cents / 1200))
                      & (f <= f_target * 2 ** (cents / 1200)))[0]
    k = int(band[np.argmax(mag[band])])
    a, b, c = np.log(mag[k - 1:k + 2] + 1e-30)
    d = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return float((k + d) * fs / nfft)


# ------------------------------------------------------------------ in process
def test_tuner_hands_the_table_over_at_a_block_start():
    from pianosynth.engine.core import Engine
    from pianosynth.engine.events import NO_EVENTS
    from pianosynth.io.live import MtsTuner
    from pianosynth.io.midi_live import MidiEventQueue

    engine = Engine(None, RATE)
    queue = MidiEventQueue()
    logs = []
    tuner = MtsTuner(engine, queue, logs.append, in_process=True)
    tuner.start()
    old = engine.keys
    out = np.zeros((PERIOD, 2), np.float32)
    try:
        queue.push_sysex(time.perf_counter(), bytes([0xF0, 0x43, 0x10, 0x00, 0xF7]))  # foreign
        queue.push_sysex(time.perf_counter(), encode_single_note_tuning([(69, 445.0)]))
        t_end = time.monotonic() + 60
        while tuner.pending is None:                     # designing (off the block loop)
            assert time.monotonic() < t_end, "no table designed"
            assert engine.keys is old                    # never swapped behind the loop
            engine.render(out, NO_EVENTS)
            time.sleep(0.005)
        assert engine.keys is old
        tuner.take(engine)                               # what the callback does first
        assert engine.keys is not old and tuner.pending is None
    finally:
        tuner.close()
    ref = Engine(None, RATE)
    ref.retune_keys({69: 445.0})
    # the table Engine.retune_keys makes (the design's iterative fits agree to ~1e-5)
    np.testing.assert_array_equal(engine.keys.kt_i, ref.keys.kt_i)
    for name in ("kt_f", "kt_sos", "kt_res"):
        np.testing.assert_allclose(getattr(engine.keys, name), getattr(ref.keys, name),
                                   rtol=1e-3, atol=1e-9)
    assert tuner.stats() == dict(mts_messages=1, sysex_ignored=1, mts_retunes=1,
                                 mts_installed=1)
    assert any("retuned 1 key" in t for t in logs), logs


def test_tuner_merges_a_burst_into_few_redesigns():
    from pianosynth.engine.core import Engine
    from pianosynth.io.live import MtsTuner
    from pianosynth.io.midi_live import MidiEventQueue

    engine = Engine(None, RATE)
    queue = MidiEventQueue()
    tuner = MtsTuner(engine, queue, lambda text: None, in_process=True)
    for i in range(200):                                 # before the thread runs: one batch
        queue.push_sysex(0.0, encode_single_note_tuning([(60 + i % 12, 260.0 + i * 0.01)]))
    tuner.start()
    try:
        t_end = time.monotonic() + 60
        while tuner.retunes == 0:
            assert time.monotonic() < t_end
            time.sleep(0.01)
        time.sleep(0.2)
    finally:
        tuner.close()
    assert tuner.messages == 200 - queue.sysex_dropped
    assert tuner.retunes == 1
    assert len(tuner.last_changes) == 12


# ------------------------------------------------------------------ on JACK
@pytest.fixture
def server(tmp_path):
    why = jack_missing_reason()
    if why:
        pytest.skip(f"needs a JACK server: {why}")
    srv = NamedJackServer(unique_server_name("psmts"), RATE, PERIOD,
                          log_path=str(tmp_path / "jackd.log"))
    srv.start()
    srv.use()
    yield srv
    srv.stop()
    srv.unuse()


def test_mts_sysex_retunes_a4_live(server, tmp_path):
    rtmidi = pytest.importorskip("rtmidi")
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("python-rtmidi built without JACK")
    log = LogTail(tmp_path / "play.log")
    with open(log.path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pianosynth", "play", "--virtual"],
                                cwd=REPO, env=player_env(server), stdout=out, stderr=out)
    rec = mo = None
    try:
        log.wait_for("Ctrl-C stops", 180, proc)
        mo = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="psmts_send")
        mo.open_port([i for i, p in enumerate(mo.get_ports()) if "pianosynth:midi_in" in p][0])
        mo.send_message(list(encode_single_note_tuning([(69, 445.0)])))
        log.wait_for("MIDI tuning: retuned 1 key(s) (69: 445.000 Hz)", 90, proc)
        time.sleep(0.2)                                   # installed at the next block
        rec = JackRecorder("psmtsrec", channels=2, max_seconds=6.0)
        ports = server.ports()
        rec.connect([p for p in ports if p.startswith("PortAudio") and ":out_" in p][:2])
        rec.start()
        time.sleep(0.2)
        mo.send_message([0x90, 69, 100])
        time.sleep(1.6)
        mo.send_message([0x80, 69, 0])
        rec.stop()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if mo is not None:
            mo.close_port()
            mo.delete()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    data, _, missing = rec.recorded()
    valid = rec.valid_mask()
    rec.close()
    assert rc == 0, log.text()
    x = data.mean(axis=0).astype(np.float64)
    fs = rec.sample_rate
    onset = int(np.argmax(np.abs(x) > 1e-4))
    a0, a1 = onset + int(0.05 * fs), min(len(x), onset + int(1.4 * fs))
    if not valid[a0:a1].all():                            # gaps: take the longest run
        v = valid[a0:a1].astype(np.int8)
        edges = np.flatnonzero(np.diff(np.r_[0, v, 0])).reshape(-1, 2)
        k = int(np.argmax(edges[:, 1] - edges[:, 0]))
        a0, a1 = a0 + int(edges[k, 0]), a0 + int(edges[k, 1])
    if a1 - a0 < int(0.4 * fs):
        pytest.skip(f"inconclusive: the recording has gaps ({missing} frames lost)")
    f = _peak_hz(x[a0:a1], fs, 445.0)
    err = 1200 * math.log2(f / 445.0)
    print(f"MTS live: A4 retuned to 445 Hz, partial 1 measured {f:.3f} Hz ({err:+.2f} cents, "
          f"window {1000 * (a1 - a0) / fs:.0f} ms)")
    assert abs(err) <= 2.0
