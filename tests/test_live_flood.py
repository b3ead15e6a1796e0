"""A MIDI flood into ``pianosynth play --virtual`` on a real JACK server (issue 8, "Live MIDI").

The test starts its own named dummy JACK server (48 kHz, 256 frames), runs the player as a
subprocess and sends it, through rtmidi's JACK API, more than 10 000 messages per second for
10 s: note-ons never released, note-offs never struck, all 128 keys at once, controllers
(pedals, all-notes-off), pitch bend, aftertouch, program changes, short and stray messages,
system real-time bytes, SysEx (MIDI Tuning retunes, foreign and long ones).

Judged:
- the player survives and exits 0 on SIGTERM, without a traceback;
- the audio keeps running: the callback count (``--stats-json``, written on SIGUSR1) grows in
  every second of the flood at >= 80 % of the nominal rate;
- underflows during the flood no more than an empty callback's on the same server, scaled
  to the same number of callbacks, + 2. The empty callback is measured twice: alone
  (before and after) and under the same flood sent to its own idle rtmidi port (the sender
  and jackd's MIDI routing load the same two cores as for the player); the worse counts.
  ``FLOOD_MIDI_MODE=callback|poll`` floods ``play --midi-mode callback|poll`` instead of
  the default (on JACK: ``jack``, our own port with a compiled process callback);
- resident memory (VmRSS) grows <= 5 % from second 3 of the flood to its end;
- every message is accounted for: received = delivered + stale + dropped + still queued
  (what the player drops under the flood it counts; JACK itself may lose some between the
  sender and the player, which the player cannot see).

A shared machine is noisy in bursts: up to three whole runs are judged; a run is
inconclusive (skipped) only if the empty callback itself dropped > 2 % of its blocks.
Budget: 30-40 s per run with a warm numba cache.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jack_helpers import REPO, LogTail, NamedJackServer, empty_callback_baseline, \
    empty_callback_process, finish_empty_callback, jack_missing_reason, player_env, \
    unique_server_name, vm_rss_kib  # noqa: E402

#: live stress checks (MIDI flood, soak, MTS on JACK): minutes of timing on a real server,
#: flaky on shared CI cores; run with PIANOSYNTH_STRESS_TESTS=1 (and the scripts/ versions)
stress = pytest.mark.skipif(not os.environ.get("PIANOSYNTH_STRESS_TESTS"),
                            reason="live stress test: set PIANOSYNTH_STRESS_TESTS=1")


RATE, PERIOD = 48000, 256
FLOOD_S = 10.0
TARGET_RATE = 12000            # messages per second sent
BASELINE_S = 4.0               # each half
NOISY_RATE = 0.02
MARGIN = 2
ATTEMPTS = int(os.environ.get("FLOOD_ATTEMPTS", "2"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = jack_missing_reason()
    if why:
        pytest.skip(f"needs a JACK server: {why}")
    log = tmp_path_factory.mktemp("jack") / "jackd.log"
    srv = NamedJackServer(unique_server_name("psflood"), RATE, PERIOD, log_path=str(log))
    srv.start()
    srv.use()
    yield srv
    srv.stop()
    srv.unuse()


def _rtmidi_jack():
    rtmidi = pytest.importorskip("rtmidi")
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("python-rtmidi built without JACK")
    return rtmidi


def flood_messages(rng: random.Random):
    """An endless mix of what a broken or hostile sender can put on the wire."""
    from pianosynth.io.mts import encode_single_note_tuning
    k = 0
    while True:
        k += 1
        if k % 2000 == 0:                                  # all 128 keys at once, then off
            for key in range(128):
                yield [0x90 | rng.randrange(16), key, rng.randrange(1, 128)]
            for key in range(128):
                yield [0x80, key, 0]
            continue
        r = rng.random()
        ch = rng.randrange(16)
        if r < 0.40:
            yield [0x90 | ch, rng.randrange(128), rng.randrange(1, 128)]   # never released
        elif r < 0.55:
            yield [0x80 | ch, rng.randrange(128), rng.randrange(128)]      # never struck
        elif r < 0.60:
            yield [0x90 | ch, rng.randrange(128), 0]                       # note-on vel 0
        elif r < 0.72:
            yield [0xB0 | ch, rng.choice((64, 66, 67, 1, 7, 10, 123, 120, 121)),
                   rng.randrange(128)]
        elif r < 0.80:
            yield [0xE0 | ch, rng.randrange(128), rng.randrange(128)]      # pitch bend
        elif r < 0.84:
            yield [0xA0 | ch, rng.randrange(128), rng.randrange(128)]      # poly aftertouch
        elif r < 0.87:
            yield [0xD0 | ch, rng.randrange(128)]                          # channel pressure
        elif r < 0.89:
            yield [0xC0 | ch, rng.randrange(128)]                          # program change
        elif r < 0.93:
            yield rng.choice(([0x90], [0x90, 60], [0x80], [0xB0, 64], [0xE0]))   # short
        elif r < 0.96:
            yield [rng.choice((0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF, 0xF6, 0xF4, 0xF5))]
        elif r < 0.97:
            yield [0xF1, rng.randrange(128)]                               # MTC quarter frame
        elif r < 0.975:
            yield [0xF2, rng.randrange(128), rng.randrange(128)]           # song position
        elif r < 0.985:
            yield [0x90 | ch, 0xFF, 0xFF]                                  # 8-bit "data"
        elif r < 0.993:                                                    # MTS retune
            yield list(encode_single_note_tuning([(rng.randrange(21, 109),
                                                   rng.uniform(27.5, 4000.0))]))
        elif r < 0.997:
            yield [0xF0, 0x43, 0x10, 0x4C, 0x00, 0x00, 0x7E, 0x00, 0xF7]   # foreign SysEx
        else:
            yield [0xF0, 0x7D] + [rng.randrange(128) for _ in range(300)] + [0xF7]  # long


class Flooder(threading.Thread):
    def __init__(self, port, seconds: float, rate: float, seed: int = 8):
        super().__init__(name="flooder", daemon=True)
        self.port, self.seconds, self.rate = port, seconds, rate
        self.msgs = flood_messages(random.Random(seed))
        self.sent = self.refused = 0
        self.t0 = self.t1 = None

    def run(self):
        send = self.port.send_message
        self.t0 = t0 = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now - t0 >= self.seconds:
                break
            due = int((now - t0) * self.rate) + 50         # keep ~4 ms ahead of the rate
            while self.sent + self.refused < due:
                m = next(self.msgs)
                try:
                    send(m)
                    self.sent += 1
                except (ValueError, TypeError, RuntimeError, OverflowError):
                    self.refused += 1                        # rtmidi refuses to send it
            time.sleep(0.002)
        self.t1 = time.perf_counter()


def _stats(proc, path: Path, timeout: float = 3.0) -> dict:
    """Ask the player for its statistics now (SIGUSR1) and read them."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    proc.send_signal(signal.SIGUSR1)
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if path.exists() and path.stat().st_mtime_ns != before:
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass
        time.sleep(0.02)
    raise AssertionError("the player did not write its statistics on SIGUSR1")


class FloodUnderflows(Exception):
    """Everything held except the underflow count."""


def test_ring_drain_rules():
    """The compiled drain of the "jack" mode's ring follows MidiEventQueue.drain_into's flood
    rules: stale note-ons dropped, late note-offs played at 0, the note-on budget, future
    messages kept, and received = delivered + stale + dropped + queued."""
    from pianosynth.io import gate_callback as g
    from pianosynth.io.midi_live import EventBlock, JackMidiRing, MidiEventQueue
    fs, n = 48000.0, 256
    ring = JackMidiRing(capacity=64)
    h = ring.shared
    t0 = 1000.0                                  # s on the JACK clock; clock_offset 0

    def put(t_s, st, d1, d2):
        w = int(h[g.J_WRITE])
        j = w & (ring.capacity - 1)
        h[g.J_LEN + j] = st | d1 << 8 | d2 << 16
        h[g.J_LEN + ring.capacity + j] = int(round(t_s * 1e6))
        h[g.J_WRITE] = w + 1
        h[g.J_RECEIVED] += 1

    put(t0 - 0.2, 0x90, 60, 100)                 # stale note-on: dropped
    put(t0 - 0.2, 0x80, 61, 0)                   # late note-off: offset 0
    for i in range(20):                          # 20 note-ons at frame 10: budget 16
        put(t0 + 10.5 / fs, 0x90, 30 + i, 90)
    put(t0 + 300.5 / fs, 0xB0, 64, 127)          # next block
    q = MidiEventQueue()
    q.attach_ring(ring)
    block = EventBlock(64)
    k = q.drain_into(block, 0, t0, fs, n)
    assert k == 17 and q.stale == 1 and q.late == 1 and q.deferred == 1
    assert [int(x) for x in block.offset[:k]] == [0] + [10] * 16
    assert int(block.status[0]) == 0x80 and int(block.data1[16]) == 45
    assert q.received == q.delivered + q.stale + q.dropped + len(q) and len(q) == 5
    k = q.drain_into(block, 0, t0 + n / fs, fs, n)
    assert k == 5 and [int(x) for x in block.offset[:k]] == [0, 0, 0, 0, 44]
    assert len(q) == 0 and q.delivered == 22


def test_jack_midi_port(server):
    """The "jack" MIDI mode's own port (compiled process callback -> ring -> drain_into):
    channel messages arrive in order with 7-bit data, everything else is ignored or
    counted, SysEx reaches the tuning side, the wake word is set, the accounting holds.
    A few seconds; not a stress test."""
    import numpy as np

    from pianosynth.io.midi_live import EventBlock, MidiEventQueue, MidiInputs
    rtmidi = _rtmidi_jack()
    q = MidiEventQueue()
    q.stale_s = float("inf")                 # drained late on purpose: play them all
    wake = np.zeros(1, np.int64)
    q.wake = wake
    midi = MidiInputs(q, virtual=True, api="jack", log=lambda text: None)
    mo = None
    try:
        midi.start()
        assert midi.mode == "jack" and midi.ring is not None, midi.mode
        assert midi.virtual_port_name.endswith(":midi_in")
        mo = _open_sender(rtmidi, "psport_send")
        time.sleep(0.3)
        sent = [[0x90, 60, 100], [0xB0, 64, 127], [0x80, 60, 0], [0x90, 0xFF, 0xFF],
                [0x90], [0xE0, 1, 2]]
        for m in sent + [[0xF8], [0xF2, 1, 2]]:
            mo.send_message(m)
        mo.send_message([0xF0, 0x7F, 0x7F, 0x08, 0x02, 0x00, 0x01, 60, 60, 0, 0, 0xF7])
        mo.send_message([0xF0, 0x7D] + [1] * 5000 + [0xF7])          # too long: dropped
        t_end = time.monotonic() + 3.0
        while q.received < len(sent) and time.monotonic() < t_end:
            time.sleep(0.01)
        time.sleep(0.1)
        assert wake[0] == 1
        block = EventBlock(64)
        k = q.drain_into(block, 0, time.perf_counter(), 48000.0, 256)
        got = [[int(block.status[i]), int(block.data1[i]), int(block.data2[i])]
               for i in range(k)]
        assert got == [[0x90, 60, 100], [0xB0, 64, 127], [0x80, 60, 0], [0x90, 0x7F, 0x7F],
                       [0x90, 0, 0], [0xE0, 1, 2]], got
        assert list(block.offset[:k]) == [0] * k and q.late == k     # all past due
        assert midi.ring.ignored == 2
        q.pump_sysex()
        assert len(q.sysex) == 1 and q.sysex[0][1][:2] == bytes([0xF0, 0x7F])
        assert q.sysex_received == 2 and q.sysex_dropped == 1
        assert q.received == q.delivered + q.stale + q.dropped + len(q) == len(sent)
    finally:
        if mo is not None:
            mo.close_port()
            mo.delete()
        midi.close()
    assert q.ring is None and q.received == len(sent) and len(q) == 0
    assert [list(m) for m in q.recent_messages()][-2:] == [[0x90, 0, 0], [0xE0, 1, 2]]


@stress
def test_midi_flood(server, tmp_path):
    rtmidi = _rtmidi_jack()
    failures, skips, underflows = [], [], []
    for attempt in range(1, ATTEMPTS + 1):
        work = tmp_path / f"attempt{attempt}"
        work.mkdir()
        try:
            _flood_run(rtmidi, server, work)
            print(f"flood: passed on attempt {attempt} of {ATTEMPTS}")
            return
        except AssertionError as exc:
            failures.append(f"attempt {attempt}: {exc}")
            print(f"flood: attempt {attempt} failed:\n{exc}")
        except pytest.skip.Exception as exc:
            skips.append(f"attempt {attempt}: {exc}")
            print(f"flood: attempt {attempt} inconclusive: {exc}")
        except FloodUnderflows as exc:
            underflows.append(f"attempt {attempt}: {exc}")
            print(f"flood: attempt {attempt}: {exc}")
        assert server.alive, "the JACK server died during the run"
    if underflows and not failures:
        if os.environ.get("FLOOD_MIDI_MODE") in ("callback", "poll"):
            # known (issue 8): rtmidi's callback calls Python per message in JACK's thread,
            # which waits for the GIL with the graph behind it (69-193 underflows in 10 s
            # against 29-45 for the flooded empty callback); poll mode's reader contends for
            # the GIL with the audio callback (35-112). The default on JACK, our own port
            # with a compiled process callback, has no Python in JACK's thread.
            pytest.xfail("underflows above the empty callback under the flood: "
                         + "; ".join(underflows))
        pytest.fail("underflows above the empty callback under the flood in every run: "
                    + "; ".join(underflows), pytrace=False)
    if failures:
        pytest.fail("every run of the flood check failed or was inconclusive:\n"
                    + "\n\n".join(failures + skips), pytrace=False)
    pytest.skip("; ".join(skips))


def _open_sender(rtmidi, name: str = "psflood_send"):
    mo = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
    idx = [i for i, p in enumerate(mo.get_ports()) if "pianosynth:midi_in" in p]
    assert idx, mo.get_ports()
    mo.open_port(idx[0])
    return mo


def flooded_empty_callback(rtmidi, env, seconds: float = FLOOD_S) -> tuple[int, int, float]:
    """(callbacks in the flood, underflows in the flood, messages/s sent) of an empty
    callback whose idle rtmidi port receives the same flood as the player."""
    proc = empty_callback_process(seconds + 2.5, env, RATE)
    mo = None
    try:
        mo = _open_sender(rtmidi, "psflood_base")
        time.sleep(1.0)
        flood = Flooder(mo, seconds, TARGET_RATE)
        flood.start()
        flood.join()
    finally:
        if mo is not None:
            mo.close_port()
            mo.delete()
    calls, times = finish_empty_callback(proc, seconds + 60)
    under = sum(1 for t in times if flood.t0 <= t <= flood.t1)
    n_calls = round((flood.t1 - flood.t0) * RATE / PERIOD)
    return n_calls, under, flood.sent / (flood.t1 - flood.t0)


def _flood_run(rtmidi, server, work: Path):
    env = player_env(server)
    base = [empty_callback_baseline(BASELINE_S, env, RATE)]
    fc, fu, frate = flooded_empty_callback(rtmidi, env)
    stats_path = work / "stats.json"
    log = LogTail(work / "play.log")
    cmd = [sys.executable, "-m", "pianosynth", "play", "--virtual", "--stats-json",
           str(stats_path)]
    if os.environ.get("FLOOD_MIDI_MODE"):
        cmd += ["--midi-mode", os.environ["FLOOD_MIDI_MODE"]]
    with open(log.path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=out)
    mo = None
    try:
        log.wait_for("Ctrl-C stops", 180, proc)
        mo = _open_sender(rtmidi)
        time.sleep(1.0)                                  # connection settled
        flood = Flooder(mo, FLOOD_S, TARGET_RATE)
        flood.start()
        rss, calls = [], []                              # (t, KiB), (t, callbacks)
        while flood.is_alive():
            flood.join(0.5)
            t = time.perf_counter() - flood.t0
            rss.append((t, vm_rss_kib(proc.pid)))
            if proc.poll() is not None:
                raise AssertionError(f"the player died in the flood:\n{log.text()[-3000:]}")
            if not calls or t - calls[-1][0] >= 1.0:
                calls.append((t, _stats(proc, stats_path)["callbacks"]))
        time.sleep(0.5)                                  # the queue drains
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if mo is not None:
            mo.close_port()
            mo.delete()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    base.append(empty_callback_baseline(BASELINE_S, env, RATE))
    text = log.text()
    stats = json.loads(stats_path.read_text())
    mode = stats.get("midi_mode")
    sent_rate = flood.sent / (flood.t1 - flood.t0)

    # underflows inside the flood window vs the empty callback
    in_flood = sum(1 for t in stats["underflow_times"] if flood.t0 <= t <= flood.t1)
    n_calls = (flood.t1 - flood.t0) * RATE / PERIOD
    rate_alone = max(u / max(c, 1) for c, u in base)
    rate = max(rate_alone, fu / max(fc, 1))
    allowed = rate * n_calls + MARGIN
    late_rss = [r for t, r in rss if t >= 3.0 and r]
    growth = (late_rss[-1] - late_rss[0]) / late_rss[0]
    per_s = [(c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in zip(calls, calls[1:])]
    print(f"flood: sent {flood.sent} messages in {flood.t1 - flood.t0:.1f} s "
          f"({sent_rate:.0f}/s; {flood.refused} refused by rtmidi); player received "
          f"{stats['midi_received']} + {stats['sysex_received']} SysEx, delivered "
          f"{stats['midi_delivered']}, stale note-ons dropped {stats['midi_stale']}, queue "
          f"overflow {stats['midi_dropped']}, blocks at the note-on budget "
          f"{stats['midi_deferred']}, SysEx dropped {stats['sysex_dropped']}, MTS messages "
          f"{stats['mts_messages']} -> {stats['mts_retunes']} retunes, {stats['mts_installed']} "
          f"installed; ignored SysEx {stats['sysex_ignored']}")
    print(f"flood: underflows in the flood ({mode} mode) {in_flood} in {n_calls:.0f} "
          f"callbacks (all {stats['underflows']} in {stats['callbacks']}); empty callback "
          + ", ".join(f"{u} in {c}" for c, u in base) + f"; empty callback under the same "
          f"flood ({frate:.0f}/s) {fu} in {fc}; allowed {allowed:.1f}")
    inside = [(g, w) for t, g, w in zip(stats["underflow_times"],
                                        stats.get("underflow_gaps_ms", []),
                                        stats.get("underflow_prev_work_ms", []))
              if flood.t0 <= t <= flood.t1]
    per_ms = 1e3 * PERIOD / RATE
    print(f"flood: before those underflows the previous callback worked > half a period in "
          f"{sum(1 for g, w in inside if w > 0.5 * per_ms)}, was short and followed by a gap "
          f"> 1.5 periods in {sum(1 for g, w in inside if w <= 0.5 * per_ms and g > 1.5 * per_ms)}"
          f" (of {len(inside)}); previous work max "
          f"{max((w for g, w in inside), default=0):.1f} ms, gap max "
          f"{max((g for g, w in inside), default=0):.1f} ms")
    print(f"flood: callbacks per second while flooded "
          f"{', '.join(f'{x:.0f}' for x in per_s)} (nominal {RATE / PERIOD:.1f}); VmRSS "
          f"{late_rss[0] / 1024:.1f} MiB at 3 s -> {late_rss[-1] / 1024:.1f} MiB at the end "
          f"({100 * growth:+.2f} %); render load mean {100 * stats['render_load_mean']:.0f} %, "
          f"max {100 * stats['render_load_max']:.0f} % of the block time")

    assert rc == 0, text
    assert "Traceback" not in text, text
    assert sent_rate >= 10000, f"the sender managed only {sent_rate:.0f} messages/s"
    assert stats["midi_received"] + stats["sysex_received"] >= 0.5 * flood.sent, stats
    q = stats
    assert q["midi_received"] == (q["midi_delivered"] + q["midi_stale"] + q["midi_dropped"]
                                  + q["midi_queued"]), "messages lost without being counted"
    assert per_s and min(per_s) >= 0.8 * RATE / PERIOD, per_s
    assert growth <= 0.05, rss
    if in_flood > allowed:
        if rate_alone > NOISY_RATE:
            pytest.skip(f"inconclusive: the empty callback alone had {100 * rate:.1f} % "
                        "underflows")
        raise FloodUnderflows(f"{in_flood} underflows in the flood, allowed {allowed:.1f}")
