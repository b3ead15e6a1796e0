"""``pianosynth gui``: open the control panel and play live (the options of ``play``).

Without an audio device the panel still opens, says so in its status bar and runs the
engine on a silent clock, so the keyboard, MIDI input and plots keep working.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from ..errors import PianosynthError
from ..io.live import add_play_arguments


#: niceness of the GUI thread when the engine runs in its own process.
GUI_NICE = 5
#: seconds after the start counted as start-up in the statistics (``--stats-json``).
STEADY_AFTER_S = 5


def add_gui_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pianosynth gui``: those of ``play``, plus ``--no-audio``."""
    add_play_arguments(parser)
    parser.add_argument("--no-audio", action="store_true",
                        help="do not open an audio device; run the engine on a silent clock "
                             "(plots and MIDI still work)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the audio engine in the GUI's process (default: its own "
                             "process, so the panel cannot cause dropouts)")


#: references to None held to make up for those a broken binding dropped while probed.
_COMPENSATION: list = []


def binding_problem() -> str | None:
    """Why this PySide6 cannot run the panel, or None.

    PySide6 6.12.0 on Python 3.11 drops a reference to ``None`` on every call that returns
    None (it treats None as immortal, which it is only from Python 3.12), so the
    interpreter aborts ("deallocating None") after a few minutes of GUI use. Probed, not
    looked up by version: 200 such calls must leave ``None``'s reference count unchanged.
    """
    import PySide6
    from PySide6.QtCore import QObject
    o = QObject()
    before = sys.getrefcount(None)
    for _ in range(200):
        o.setObjectName("probe")
    lost = before - sys.getrefcount(None)
    if lost < 100:
        return None
    _COMPENSATION.extend([None] * lost)
    return (f"PySide6 {PySide6.__version__} corrupts the reference count of None on Python "
            f"{sys.version_info.major}.{sys.version_info.minor} (the panel would abort within "
            "minutes); install another version: pip install 'PySide6-Essentials!=6.12.0'")


def _check_display() -> None:
    if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
            or os.environ.get("QT_QPA_PLATFORM")):
        raise PianosynthError("no display for the control panel (DISPLAY and WAYLAND_DISPLAY "
                              "are unset): run it on a desktop, under `xvfb-run -a`, or "
                              "with QT_QPA_PLATFORM=offscreen")


def _say(text: str) -> None:
    print(f"pianosynth: {text}", file=sys.stderr, flush=True)


def cmd_gui(args) -> int:
    """Open the panel; returns 0 when the window is closed (or after ``--duration``).

    Raises
    ------
    PianosynthError
        No display, a bad ``--buffer``/``--sample-rate``, an unreadable ``--midi-file``,
        or ``--virtual`` without a MIDI system. A bad ``--preset`` opens the panel with the
        default preset and shows the error there.
    """
    _check_display()
    problem = binding_problem()
    if problem:
        raise PianosynthError(problem)
    if args.buffer is not None and not (16 <= args.buffer <= 8192):
        raise PianosynthError(f"--buffer {args.buffer}: give 16 to 8192 frames")
    if args.sample_rate is not None and not (8000 <= args.sample_rate <= 384000):
        raise PianosynthError(f"--sample-rate {args.sample_rate}: give 8000 to 384000 Hz")
    # with --in-process, a busy GUI thread must not hold the GIL for 5 ms at a time while
    # the audio callback waits (TESTING.md: 209 underflows in 1 870 callbacks at 0.005 s)
    sys.setswitchinterval(0.001)

    from .. import presets as P
    startup_error = ""
    try:
        preset = P.load_preset(args.preset) if args.preset else P.default_preset()
    except PianosynthError as exc:
        startup_error = f"Preset not loaded, using the default: {exc}"
        preset = P.default_preset()
    file_events = None
    if args.midi_file:
        from ..io.live import _read_midi_file
        file_events = _read_midi_file(args.midi_file)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .keyanalysis import warm_up
    from .engine_process import RemoteSession
    from .panel import ControlPanel, apply_style, full_settings
    from .session import LiveSession

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("pianosynth")
    apply_style(app)
    make = LiveSession if args.in_process else RemoteSession
    try:
        keys = preset.key_overrides()           # [keys.N] merged over the [tuning] table
    except PianosynthError as exc:
        startup_error = f"Preset tuning not applied: {exc}"
        keys = preset.keys
    session = make(full_settings(preset.settings), keys, log=_say,
                   velocity_points=preset.velocity_points())
    if not args.in_process:
        # the audio process is spawned: from here on this (GUI) thread and the threads it
        # starts yield the CPU to it (Linux niceness is per thread and inherited)
        try:
            os.nice(GUI_NICE)
        except OSError:
            pass
    marks = {}
    try:
        # open the device (its rate sizes the engine) but start it once the window is up:
        # building the window holds the GIL for a while and would starve the callback
        session.open_audio(args.audio_device, args.sample_rate, args.buffer or 256,
                           mode="silent" if args.no_audio else "auto", start=False)
        panel = ControlPanel(session, preset, startup_message=startup_error,
                             analyse_at_start=False)
        panel.show()
        app.processEvents()

        def start():
            # everything that loads code or opens JACK clients (MIDI probes re-plan the
            # JACK graph) happens before the stream starts, not while it runs
            if file_events is None or args.midi_in or args.virtual:
                session.open_midi(args.midi_in, virtual=args.virtual, api=args.midi_api,
                                  mode=args.midi_mode)
            else:
                session.open_midi("")
            panel.audio_started()
            warm_up(session.sample_rate)
            if file_events is not None:
                session.set_midi_file(file_events)
            status = session.start_audio()
            panel.request_analysis(0)
            panel._tick_meters()
            if not startup_error:
                panel.show_message(status)
                if "no audio output" in status:
                    panel.msg_label.setStyleSheet("color: #f0a030;")
            def mark():
                m = session.meters()
                marks.update(underflows_startup=m["underflows"],
                             callbacks_startup=m["callbacks"])
            QTimer.singleShot(STEADY_AFTER_S * 1000, mark)

        QTimer.singleShot(0, start)

        def stop(*_):
            panel.force_close = True
            panel.close()
        if args.duration:
            QTimer.singleShot(int(args.duration * 1000), stop)
        def stats_now():
            stats = session.stats()
            stats.update(marks)
            _write_stats(args.stats_json, stats)

        # Ctrl-C / SIGTERM close the panel (and fade the audio out) as they stop `play`;
        # SIGUSR1 writes the statistics so far (--stats-json), as `play` does. The handlers
        # only post to the event loop; the plot timer runs Python often enough (>= 5 Hz)
        # for them to be called
        old = {sig: signal.signal(sig, lambda *_: QTimer.singleShot(0, stop))
               for sig in (signal.SIGINT, signal.SIGTERM)}
        if args.stats_json and hasattr(signal, "SIGUSR1"):
            old[signal.SIGUSR1] = signal.signal(
                signal.SIGUSR1, lambda *_: QTimer.singleShot(0, stats_now))
        try:
            app.exec()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
    finally:
        stats = session.stats()
        stats.update(marks)
        session.close()
    _say(f"panel closed: {stats.get('callbacks', 0)} blocks, "
         f"{stats.get('underflows', 0)} underflows")
    _write_stats(args.stats_json, stats)
    return 0


def _write_stats(path: str | None, stats: dict) -> None:
    """The statistics as JSON at ``path`` (if given), atomically: a reader never sees half
    a file."""
    if not path:
        return
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(stats, f, indent=1)
        os.replace(path + ".tmp", path)
    except OSError as exc:
        _say(f"warning: cannot write {path}: {exc}")
