"""Soak test on a JACK dummy server with the control panel open (issue 8, "Long run").

Starts its own ``jackd -n <name> --realtime -d dummy -r 48000 -p 256`` (``--server no-realtime``: ``--no-realtime``), runs
``pianosynth gui --virtual`` offscreen (``QT_QPA_PLATFORM=offscreen``: the panel, its meters
and plots run as on a desktop; the engine runs in its own process) and plays the pieces of
``../shared/data/midi/`` into the panel's virtual MIDI port, in a loop, for ``--minutes``.
Then it releases everything and measures the silence. Printed, with PASS/FAIL:

- underflows while playing (the audio process's own count, timestamps inside the playing
  window) against an empty PortAudio callback (plus an idle rtmidi JACK input and a
  connected rtmidi output like this script's sender: the same JACK clients) measured on the
  same time on a second JACK dummy server (``--baseline-mode concurrent``, the default: "an
  empty callback in the same run", counted like the player's inside the playing window),
  scaled to the playing's number of callbacks: allowed ``baseline + 1``. The machine's
  stalls (a JACK graph woken late: every client of it reports an underflow, PortAudio
  flags any xrun of the server) come in phases: three 10-minute runs read 3, 5 and 19
  underflows while playing against 2, 5 and 6 for empty callbacks run before and after, so
  only a baseline measured at the same time samples the same phase. ``--baseline-mode
  sequential``: on the same server, half before and the rest after (exactly as many
  callbacks as the playing); the short before/after runs of the concurrent mode give the
  empty Python callback's CPU. Printed with them: how many followed a callback that worked
  more than half a period (this program's work) and how many a short callback after which
  the next came more than 1.5 periods later (the thread was not run in time: the machine);
- resident memory (VmRSS) of the audio process and of panel + audio together, from
  ``--warmup`` seconds into the playing to its end: growth <= 5 %;
- CPU of the instrument (panel + audio process, or the player) in silence against its CPU
  while playing, both above what its JACK clients cost with nothing rendered (a process
  with the same two JACK clients whose stream callback is C writing zeros, never entering
  Python: :func:`jack_helpers.c_callback_cpu`, measured before and after): <= 5 %. The
  harness (its MIDI sender, this script) is not counted. "In silence after the last
  note" is measured from the moment the last note's tail has ended: all notes and pedals
  released, then the engine has freed every voice and its soundboard is quiet, which the
  player reports (SIGUSR1 statistics: no voice, and the output skips the idle engine in
  every block, :class:`pianosynth.io.audio_out.IdleGate`); waited for up to
  ``--tail-max-s``, then ``--panel-idle-s`` more (the panel's timers slow down after 1 s
  without new audio). Also printed: the raw ratio (nothing subtracted), the same against
  an empty *Python* callback, the busiest threads of each process in silence and while
  playing, and the share of silent blocks in which the engine was not called at all
  (>= 95 %).

Usage::

    python scripts/soak_jack.py                 # 10 minutes
    python scripts/soak_jack.py --minutes 0.5   # the CI version (tests/test_soak_jack.py)
    python scripts/soak_jack.py --play          # `pianosynth play --virtual` instead

Exit status 0 when every criterion passes, 1 when one fails, 2 when the machine was too
busy to judge (the empty callback alone dropped more than ``--noisy`` of its blocks).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from pianosynth.io.audio_out import IDLE_RECHECK_BLOCKS  # noqa: E402
from jack_helpers import LogTail, NamedJackServer, c_callback_cpu, cpu_seconds, \
    empty_callback_run, player_env, thread_cpu_seconds, unique_server_name, \
    vm_rss_kib  # noqa: E402

DEFAULT_MIDI_DIR = REPO.parent / "shared" / "data" / "midi"


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                text = f.read()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(d))
    return out


def _audio_process(gui_pid: int) -> int | None:
    """The spawned engine process of the panel (not multiprocessing's resource tracker)."""
    for c in _children(gui_pid):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"multiprocessing" in cmd and b"resource_tracker" not in cmd:
            return c
    return None


def read_stats(proc, path: Path, timeout: float = 5.0) -> dict | None:
    """Ask the player or panel for its statistics now (SIGUSR1, ``--stats-json``)."""
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
    return None


def _wait_idle(proc, stats_path: Path, tail_max_s: float, step_s: float = 0.5):
    """Wait until the engine is idle: no voice, and the output skipped >= 90 % of the blocks
    of the last ``step_s`` (:class:`pianosynth.io.audio_out.IdleGate`). Returns (seconds
    waited, True, last statistics) or (tail_max_s, False, ...) when it never went idle."""
    t0 = time.perf_counter()
    prev = st = None
    while time.perf_counter() - t0 < tail_max_s:
        st = read_stats(proc, stats_path)
        if st is not None and "idle_blocks_skipped" in st:
            cur = (st["callbacks"], st["idle_blocks_skipped"], st.get("voices", 0))
            if prev is not None and cur[2] == 0 and cur[0] > prev[0] and \
                    cur[1] - prev[1] >= 0.9 * (cur[0] - prev[0]):
                return time.perf_counter() - t0, True, st
            prev = cur
        time.sleep(step_s)
    return tail_max_s, False, st


def _threads(pids: dict) -> dict:
    return {k: thread_cpu_seconds(p) for k, p in pids.items()}


def _busiest(a: dict, b: dict, dt: float, pids: dict, top: int = 3) -> str:
    """The busiest threads of each process between two :func:`_threads` samples."""
    parts = []
    for k, pid in pids.items():
        rows = sorted(((b[k][t][1] - a[k][t][1]) / dt, t, b[k][t][0]) for t in b[k]
                      if t in a[k])[::-1]
        tot = sum(r[0] for r in rows)
        items = ", ".join(f"{'main' if t == pid else t} {100 * c:.2f}" for c, t, _ in rows[:top]
                          if c > 0)
        parts.append(f"{k} {100 * tot:.2f} % ({items or '-'})")
    return "; ".join(parts)


def _xrun_blame(path: Path) -> str:
    """jackd's own account of its xruns: which client had not finished (and in which
    state: ``Triggered`` = woken but not yet run), and how often its driver thread woke late."""
    import collections
    import re
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no jackd log"
    blame = collections.Counter(
        f"{m.group(1)} {m.group(2).lower()}" for m in
        re.finditer(r"client = (.+?) was not finished, state = (\w+)", text))
    late = len(re.findall(r"JackTimedDriver::Process XRun", text))
    parts = [f"{k} {v}" for k, v in blame.most_common()] + [f"server thread late {late}"]
    return ", ".join(parts)


def load_pieces(midi_dir: Path) -> list[tuple[str, list]]:
    from pianosynth.io.midi_file import read_midi_file
    pieces = []
    for p in sorted(midi_dir.glob("*.mid")):
        ev = read_midi_file(p)
        rows = [(float(e["time_s"]), [int(e["status"]), int(e["data1"]), int(e["data2"])])
                for e in ev]
        pieces.append((p.name, rows))
    if not pieces:
        raise SystemExit(f"no .mid files in {midi_dir}")
    return pieces


class Sender(threading.Thread):
    """Plays the pieces in a loop into ``pianosynth:midi_in`` until ``t_end``."""

    def __init__(self, pieces, t_end: float):
        super().__init__(name="soak-sender", daemon=True)
        import rtmidi
        self.mo = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="soaksend")
        ports = self.mo.get_ports()
        idx = [i for i, p in enumerate(ports) if "pianosynth:midi_in" in p]
        if not idx:
            raise RuntimeError(f"pianosynth:midi_in not found among {ports}")
        self.mo.open_port(idx[0])
        self.pieces = pieces
        self.t_end = t_end
        self.sent = 0
        self.played = []
        self.t_last = None
        self.times = []                         # perf_counter() of each message sent

    def all_off(self):
        for ch in range(16):
            self.mo.send_message([0xB0 | ch, 64, 0])
            self.mo.send_message([0xB0 | ch, 66, 0])
            self.mo.send_message([0xB0 | ch, 67, 0])
            self.mo.send_message([0xB0 | ch, 123, 0])

    def run(self):
        i = 0
        while time.perf_counter() < self.t_end:
            name, rows = self.pieces[i % len(self.pieces)]
            i += 1
            t0 = time.perf_counter() + 0.2
            for t, msg in rows:
                due = t0 + t
                if due >= self.t_end:
                    break
                while True:
                    d = due - time.perf_counter()
                    if d <= 0:
                        break
                    time.sleep(min(d, 0.05))
                self.mo.send_message(msg)
                self.sent += 1
                if len(self.times) < 200000:
                    self.times.append(time.perf_counter())
            self.all_off()              # a piece cut short by the end: pedals up, notes off
            self.played.append(name)
            time.sleep(0.3)
        self.t_last = time.perf_counter()

    def close(self):
        self.mo.close_port()
        self.mo.delete()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="playing time (default 10)")
    ap.add_argument("--midi-dir", type=Path, default=DEFAULT_MIDI_DIR)
    ap.add_argument("--play", action="store_true",
                    help="run `pianosynth play --virtual` instead of the panel")
    ap.add_argument("--baseline-s", type=float, default=None,
                    help="empty-callback seconds on the same server, half before and half "
                         "after (default: concurrent mode 10 %% of the playing, 10..60 s; "
                         "sequential mode as many callbacks as the playing)")
    ap.add_argument("--baseline-mode", choices=("concurrent", "sequential"),
                    default="concurrent",
                    help="underflow baseline: an empty callback on a second JACK server "
                         "during the playing (default), or on the same server before and "
                         "after it")
    ap.add_argument("--warmup-s", type=float, default=None,
                    help="seconds of playing before the first memory sample (default: "
                         "10 %% of the playing, 3..30 s)")
    ap.add_argument("--settle-s", type=float, default=2.0,
                    help="wait after the note-offs before looking for the end of the tail")
    ap.add_argument("--tail-max-s", type=float, default=60.0,
                    help="longest wait for the engine to free its last voice, s")
    ap.add_argument("--silence-s", type=float, default=30.0,
                    help="silence measured, s (default 30: the instrument's ~1 %% of a core in "
                         "silence, measured over 10 s, moved by +-0.5 %% from run to run, as "
                         "much as the 5 %% criterion allows above the floor)")
    ap.add_argument("--panel-idle-s", type=float, default=1.5,
                    help="wait after the engine went idle before the silence is measured "
                         "(the panel's timers slow down after 1 s without new audio)")
    ap.add_argument("--noisy", type=float, default=0.02,
                    help="empty-callback underflow rate above which no verdict is given")
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--period", type=int, default=256)
    ap.add_argument("--server", choices=("realtime", "no-realtime"), default="realtime",
                    help="start jackd with real-time scheduling (its own default, how it runs "
                         "on stage; every client's process thread then runs SCHED_FIFO, the "
                         "harness's MIDI sender included) or with --no-realtime (every "
                         "client's thread waits behind the machine's other work); default "
                         "realtime, which jackd drops where the system refuses it")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--noise-tolerant", action="store_true",
                    help="judge the silence CPU above the dearer of the two C-callback floor "
                         "runs (their spread is the machine's noise; the CI version)")
    ap.add_argument("--qt-path", type=Path, default=os.environ.get("SOAK_QT_PATH"),
                    help="folder put first on the panel's PYTHONPATH (a PySide6 installed "
                         "with pip --target, when the environment's one is refused)")
    a = ap.parse_args(argv)

    play_s = 60.0 * a.minutes
    concurrent = a.baseline_mode == "concurrent"
    if a.baseline_s is not None:
        base_s = a.baseline_s
    else:
        base_s = min(60.0, max(10.0, 0.1 * play_s)) if concurrent else max(10.0, play_s)
    warm_s = a.warmup_s if a.warmup_s is not None else min(30.0, max(3.0, 0.1 * play_s))
    pieces = load_pieces(a.midi_dir)
    work = Path(tempfile.mkdtemp(prefix="soak_jack_"))

    def new_server(prefix, log_name):
        return NamedJackServer(unique_server_name(prefix), a.rate, a.period,
                               log_path=str(work / log_name), realtime=a.server == "realtime")
    server = new_server("pssoak", "jackd.log")
    try:
        server.start()
    except RuntimeError as exc:
        raise SystemExit(f"soak_jack: cannot start a JACK server: {exc}") from None
    server.use()
    server_rt = server.is_realtime()
    env = player_env(server)
    env["QT_QPA_PLATFORM"] = "offscreen"
    if a.qt_path:                               # a Qt binding installed apart (--target)
        env["PYTHONPATH"] = str(a.qt_path) + os.pathsep + env["PYTHONPATH"]
    stats_path = work / "stats.json"
    log = LogTail(work / "player.log")
    proc = None
    fig = dict(minutes=a.minutes, mode="play" if a.play else "gui (panel open, offscreen)",
               pieces=[p[0] for p in pieces])
    base_server, conc, conc_thread = None, {}, None
    if concurrent:
        base_server = new_server("psbase", "jackd_base.log")
        try:
            base_server.start()
        except RuntimeError as exc:
            print(f"soak_jack: no second JACK server for the concurrent baseline ({exc}); "
                  "judging against the sequential one")
            base_server, concurrent = None, False
    try:
        matched = a.baseline_s is None and not concurrent
        base = [empty_callback_run(base_s / 2, env, a.rate, sender=True, window_only=matched)]
        c_floor = [c_callback_cpu(min(base_s / 2, 30.0), env, a.rate)]
        cmd = [sys.executable, "-m", "pianosynth", "play" if a.play else "gui", "--virtual",
               "--stats-json", str(stats_path)]
        with open(log.path, "w") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=out)
        t_wait = time.monotonic() + 240
        while "pianosynth:midi_in" not in " ".join(server.ports()):
            if proc.poll() is not None or time.monotonic() > t_wait:
                raise SystemExit(f"the player did not start:\n{log.text()[-3000:]}")
            time.sleep(0.2)
        audio_pid = proc.pid
        if not a.play:
            while (audio_pid := _audio_process(proc.pid)) is None:
                if proc.poll() is not None or time.monotonic() > t_wait:
                    raise SystemExit(f"no audio process:\n{log.text()[-3000:]}")
                time.sleep(0.2)
        time.sleep(3.0 if a.play else 6.0)      # the panel's start-up (window, analysis)

        def rss():
            e = vm_rss_kib(audio_pid) or 0
            g = vm_rss_kib(proc.pid) or 0 if proc.pid != audio_pid else 0
            return e, e + g

        pids = {"audio": audio_pid} if a.play else {"audio": audio_pid, "panel": proc.pid}
        if concurrent:
            env_b = player_env(base_server)

            def run_base():
                try:
                    conc["run"] = empty_callback_run(play_s, env_b, a.rate, sender=True,
                                                     window_only=True)
                except Exception as exc:  # noqa: BLE001 - reported with the figures
                    conc["error"] = str(exc)[-300:]
            conc_thread = threading.Thread(target=run_base, name="soak-baseline", daemon=True)
            conc_thread.start()
            time.sleep(1.0)                     # its process imports, its stream starts
        t_play0 = time.perf_counter()
        sender = Sender(pieces, t_play0 + play_s)
        sender.start()
        samples = []                            # (t, rss audio, rss total)
        cpu0 = None
        while sender.is_alive():
            sender.join(1.0)
            now = time.perf_counter()
            if proc.poll() is not None:
                raise SystemExit(f"the player died while playing:\n{log.text()[-3000:]}")
            e, tot = rss()
            samples.append((now - t_play0, e, tot))
            if cpu0 is None and now - t_play0 >= warm_s:
                cpu0 = (now, cpu_seconds(audio_pid), cpu_seconds(proc.pid))
                thr0 = _threads(pids)
        t_play1 = sender.t_last or time.perf_counter()
        cpu1 = (time.perf_counter(), cpu_seconds(audio_pid), cpu_seconds(proc.pid))
        thr1 = _threads(pids)
        sender.all_off()
        if conc_thread is not None:             # its window ends ~1.5 s after the playing
            conc_thread.join(timeout=120.0)
        # "after the last note" = once the last note's tail has ended: the engine has freed
        # every voice and its soundboard is silent, so the output skips it (stats
        # idle_blocks_skipped grows by every block); at least --settle-s after the note-offs
        time.sleep(a.settle_s)
        tail_s, idle_seen, st0 = _wait_idle(proc, stats_path, a.tail_max_s)
        tail_s += a.settle_s
        time.sleep(a.panel_idle_s)              # the panel's timers at their idle rates
        s0 = (time.perf_counter(), cpu_seconds(audio_pid), cpu_seconds(proc.pid))
        sthr0 = _threads(pids)
        time.sleep(a.silence_s)
        s1 = (time.perf_counter(), cpu_seconds(audio_pid), cpu_seconds(proc.pid))
        sthr1 = _threads(pids)
        st1 = read_stats(proc, stats_path) or {}
        st0 = st0 or {}
        sil_blocks = st1.get("callbacks", 0) - st0.get("callbacks", 0)
        sil_skipped = st1.get("idle_blocks_skipped", 0) - st0.get("idle_blocks_skipped", 0)
        sender.close()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if matched and t_play1 is not None and t_play0 is not None:
            # the rest of the playing's callbacks (its window: t_play0..t_play1)
            rest = int(round((t_play1 - t_play0) * a.rate / a.period)) - base[0][0]
            base.append(empty_callback_run(max(rest * a.period / a.rate, 1.0) + 2.0, env,
                                           a.rate, sender=True, window_only=True,
                                           max_calls=max(rest, 1)))
        else:
            base.append(empty_callback_run(base_s / 2, env, a.rate, sender=True))
        c_floor.append(c_callback_cpu(min(base_s / 2, 30.0), env, a.rate))
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
        server.unuse()
        if base_server is not None:
            base_server.stop()

    text = log.text()
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    period_s = a.period / a.rate
    # --- underflows while playing (after the warm-up), vs the empty callback
    t_abs0, t_abs1 = t_play0, t_play1
    times = stats.get("underflow_times", [])
    played_under = sum(1 for t in times if t_abs0 <= t <= t_abs1)
    # what came before each underflow while playing: the previous callback's work and the
    # gap since it started (the player's own figures; see AudioOutput.underflow_gaps)
    gaps = stats.get("underflow_gaps_ms", [])
    works = stats.get("underflow_prev_work_ms", [])
    per_ms = 1e3 * a.period / a.rate
    inside = [(g, w) for t, g, w in zip(times, gaps, works) if t_abs0 <= t <= t_abs1]
    long_work = sum(1 for g, w in inside if w > 0.5 * per_ms)
    late_wake = sum(1 for g, w in inside if w <= 0.5 * per_ms and g > 1.5 * per_ms)
    # ... and how many came within three periods after a MIDI message was sent (the player's
    # MIDI input takes the GIL in JACK's thread for each message), against the share of
    # the playing time that lies within three periods after a message
    import bisect
    sends = sender.times
    win = 3 * a.period / a.rate
    near_midi = 0
    for t in (t for t in times if t_abs0 <= t <= t_abs1):
        i = bisect.bisect_right(sends, t)
        if i and t - sends[i - 1] <= win:
            near_midi += 1
    covered, end = 0.0, -1.0
    for t in sends:
        covered += min(win, t + win - max(t, end)) if t + win > end else 0.0
        end = max(end, t + win)
    midi_share = covered / max(t_abs1 - t_abs0, 1e-9)
    calls = round((t_abs1 - t_abs0) / period_s)
    base_calls = sum(b[0] for b in base)
    rate = sum(b[1] for b in base) / max(base_calls, 1)                 # pooled
    floor = min(b[2] for b in base)
    floor_hi = max(b[2] for b in base)
    if concurrent and "run" in conc:
        c_c, u_c, _ = conc["run"]
        allowed = u_c * calls / max(c_c, 1) + 1.0
        rate = u_c / max(c_c, 1)
    else:
        allowed = sum(b[1] for b in base) * calls / max(base_calls, 1) + 1.0
    noisy = rate > a.noisy
    # --- memory
    warm = [s for s in samples if s[0] >= warm_s] or samples
    e0, e1 = warm[0][1], warm[-1][1]
    g0, g1 = warm[0][2], warm[-1][2]
    peak_e = max(s[1] for s in warm)
    growth_e = (e1 - e0) / e0 if e0 else float("nan")
    growth_t = (g1 - g0) / g0 if g0 else float("nan")
    # --- CPU
    play_cpu = (cpu1[1] - cpu0[1]) / (cpu1[0] - cpu0[0]) if cpu0 else float("nan")
    play_gui = (cpu1[2] - cpu0[2]) / (cpu1[0] - cpu0[0]) if cpu0 else float("nan")
    sil_cpu = (s1[1] - s0[1]) / (s1[0] - s0[0])
    sil_gui = (s1[2] - s0[2]) / (s1[0] - s0[0])
    # the instrument: panel + audio process (or the player alone)
    play_inst = play_cpu + (0.0 if a.play else play_gui)
    sil_inst = sil_cpu + (0.0 if a.play else sil_gui)
    raw_ratio = sil_inst / play_inst if play_inst > 0 else float("nan")
    # above what its JACK clients cost with nothing rendered (C callback): the verdict;
    # the cheaper of the two floor runs (stricter), the dearer with --noise-tolerant
    cf_lo, cf_hi = min(c_floor), max(c_floor)
    cf = cf_hi if a.noise_tolerant else cf_lo
    ratio = max(sil_inst - cf, 0.0) / max(play_inst - cf, 1e-9)
    ratio_lo = max(sil_inst - cf_lo, 0.0) / max(play_inst - cf_lo, 1e-9)
    # the earlier figure: the audio process above an empty *Python* callback
    eng_play, eng_sil = max(play_cpu - floor, 1e-9), max(sil_cpu - floor, 0.0)
    ratio_py = eng_sil / eng_play
    ratio_hi = max(sil_cpu - floor_hi, 0.0) / max(play_cpu - floor_hi, 1e-9)
    threads_playing = _busiest(thr0, thr1, cpu1[0] - cpu0[0], pids) if cpu0 else ""
    threads_silence = _busiest(sthr0, sthr1, s1[0] - s0[0], pids)
    skip_share = sil_skipped / sil_blocks if sil_blocks > 0 else float("nan")

    fig.update(
        played_s=round(t_abs1 - t_abs0, 1), messages_sent=sender.sent,
        pieces_played=len(sender.played), player_exit=rc,
        player_callbacks=stats.get("callbacks"), player_underflows_total=stats.get("underflows"),
        underflows_playing=played_under, callbacks_playing=round(calls),
        underflows_after_long_work=long_work, underflows_after_late_wakeup=late_wake,
        underflows_near_midi=near_midi, time_share_near_midi=midi_share,
        render_load_mean=stats.get("render_load_mean"),
        render_load_max=stats.get("render_load_max"),
        baseline=[{"callbacks": c, "underflows": u, "cpu": p} for c, u, p in base],
        baseline_rate=rate, underflows_allowed=round(allowed, 2),
        baseline_concurrent=({"callbacks": conc["run"][0], "underflows": conc["run"][1]}
                             if "run" in conc else None),
        rss_audio_kib=[e0, e1], rss_audio_peak_kib=peak_e, rss_audio_growth=growth_e,
        rss_total_kib=[g0, g1], rss_total_growth=growth_t,
        cpu_audio_playing=play_cpu, cpu_audio_silence=sil_cpu, cpu_empty_callback=floor,
        cpu_instrument_playing=play_inst, cpu_instrument_silence=sil_inst,
        cpu_c_callback=c_floor, cpu_silence_ratio_raw=raw_ratio, cpu_silence_ratio=ratio,
        cpu_silence_ratio_strict=ratio_lo, cpu_silence_ratio_py=ratio_py,
        threads_playing=threads_playing, threads_silence=threads_silence,
        tail_s=round(tail_s, 2), engine_went_idle=idle_seen,
        cpu_empty_callback_hi=floor_hi, cpu_silence_ratio_hi=ratio_hi,
        silence_blocks=sil_blocks, silence_blocks_skipped=sil_skipped,
        idle_blocks_skipped=stats.get("idle_blocks_skipped"),
        cpu_gui_playing=None if a.play else play_gui, cpu_gui_silence=None if a.play else sil_gui)
    verdicts = {
        "underflows": None if (noisy and played_under > allowed) else played_under <= allowed,
        "rss": growth_e <= 0.05 and growth_t <= 0.05,
        "silence_cpu": idle_seen and ratio <= 0.05,
        "silence_skipped": idle_seen and skip_share >= 0.95,
        "clean_exit": rc == 0 and "Traceback" not in text,
    }
    fig["verdicts"] = verdicts

    def pf(v):
        return "INCONCLUSIVE" if v is None else ("PASS" if v else "FAIL")

    print(f"soak on JACK dummy ({a.rate} Hz / {a.period}, server threads "
          f"{'real-time' if server_rt else 'not real-time'}), {fig['mode']}: played "
          f"{fig['played_s']:.0f} s, {len(sender.played)} pieces "
          f"({', '.join(sender.played[:6])}{' ...' if len(sender.played) > 6 else ''}), "
          f"{sender.sent} MIDI messages")
    print(f"underflows while playing: {played_under} in {calls:.0f} callbacks (player total "
          f"{stats.get('underflows')} in {stats.get('callbacks')}, start-up and stop "
          f"included); empty callback: "
          + (f"{conc['run'][1]} in {conc['run'][0]} at the same time on a second server "
             f"(before/after on this one: " if "run" in conc else "")
          + ", ".join(f"{u} in {c}" for c, u, _ in base) + (")" if "run" in conc else "")
          + f" -> allowed {allowed:.1f}   {pf(verdicts['underflows'])}")
    if conc.get("error"):
        print(f"  the concurrent baseline failed ({conc['error']}): judged on before/after")
    if inside:
        print(f"  before those underflows: the previous callback worked > half a period in "
              f"{long_work}; it was short and the next one came > 1.5 periods later (its "
              f"thread was not run in time) in {late_wake}; within three periods after a MIDI "
              f"message in {near_midi} (such moments are {100 * midi_share:.1f} % of the "
              f"playing time); render load mean "
              f"{100 * (stats.get('render_load_mean') or 0):.0f} %, max "
              f"{100 * (stats.get('render_load_max') or 0):.0f} % of a period")
    print(f"  audio thread: {stats.get('thread_priority')}; jackd's xruns over the whole run "
          f"(empty-callback runs included): {_xrun_blame(work / 'jackd.log')}")
    print(f"resident memory, audio process: {e0 / 1024:.1f} -> {e1 / 1024:.1f} MiB "
          f"({100 * growth_e:+.2f} %, peak {peak_e / 1024:.1f}); "
          + ("" if a.play else f"panel + audio: {g0 / 1024:.1f} -> {g1 / 1024:.1f} MiB "
             f"({100 * growth_t:+.2f} %)") + f"   {pf(verdicts['rss'])}")
    who = "player" if a.play else "panel + audio process"
    print(f"CPU of the instrument ({who}): playing {100 * play_inst:.1f} % of a core, "
          f"silence {100 * sil_inst:.2f} % (raw {100 * raw_ratio:.1f} % of playing); its JACK "
          f"clients with a C callback and nothing rendered cost "
          + "/".join(f"{100 * c:.2f}" for c in c_floor) + f" %, so above that: silence "
          f"{100 * max(sil_inst - cf, 0):.2f} % of {100 * (play_inst - cf):.1f} % -> "
          f"{100 * ratio:.1f} % of playing   {pf(verdicts['silence_cpu'])}"
          + (f"  [silence measured {a.silence_s:.0f} s from {a.panel_idle_s:.1f} s after the "
             f"end of the last tail, {tail_s:.1f} s after the note-offs]" if idle_seen else
             f"  [the engine did not go idle within {tail_s:.0f} s of the note-offs]"))
    print(f"  audio process: playing {100 * play_cpu:.1f} %, silence {100 * sil_cpu:.2f} %"
          + ("" if a.play else f"; panel: playing {100 * play_gui:.1f} %, silence "
             f"{100 * sil_gui:.2f} %") + f"; empty Python callback {100 * floor:.2f}-"
          f"{100 * floor_hi:.2f} % (audio process above it: {100 * ratio_py:.1f} % of playing)")
    print(f"  threads in silence: {threads_silence}")
    print(f"  threads playing: {threads_playing}")
    print(f"silence: the engine was skipped in {sil_skipped} of {sil_blocks} blocks "
          f"({100 * skip_share:.1f} %; the rest: one render per {IDLE_RECHECK_BLOCKS} "
          f"skipped)   "
          f"{pf(verdicts['silence_skipped'])}")
    print(f"player exit status {rc}   {pf(verdicts['clean_exit'])}")
    if a.json:
        a.json.write_text(json.dumps(fig, indent=1))
    if any(v is False for v in verdicts.values()):
        print("RESULT: FAIL")
        print(text[-3000:])
        return 1
    if any(v is None for v in verdicts.values()):
        print(f"RESULT: INCONCLUSIVE (the empty callback alone dropped {100 * rate:.1f} % "
              "of its blocks)")
        return 2
    print("RESULT: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
