"""The control panel window: presets, devices, parameters, plots, keyboard, meters.

Threads (DESIGN.md): this window lives on the GUI thread and never calls the live engine.
It writes the desired settings to its session (an applier thread brings the engine there),
sends keyboard notes into the same timestamped queue as MIDI, and reads what the audio
callback left in the session's :class:`~pianosynth.gui.session.Tap` from a ``QTimer``. The
session is a :class:`~pianosynth.gui.engine_process.RemoteSession` (engine, audio and MIDI
in their own process; the default of ``pianosynth gui``) or a
:class:`~pianosynth.gui.session.LiveSession` (same process: tests, ``--in-process``). The
selected key is rendered and measured with a private engine on a low-priority worker
thread.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QFont, QPalette
from PySide6.QtWidgets import (QComboBox, QFileDialog, QInputDialog, QLabel,
                               QMainWindow, QMessageBox, QPushButton, QScrollArea,
                               QSplitter, QStyleFactory, QToolBar, QVBoxLayout, QWidget)

from ..design.keyboard import design_keyboard
from ..engine.params import PARAMETERS
from ..errors import PianosynthError
from .. import presets as P
from .controls import ParamPanel
from .keyanalysis import analyse_key
from .keyboard import PianoKeyboard
from .plots import Plots
from .session import LiveSession, lower_thread_priority, note_name

#: GUI refresh rates: live plots and lit keys, meters.
PLOT_HZ = 20
METER_HZ = 4
#: ... while the engine renders nothing new (idle: no voice, no tail): the timers slow down
#: to these rates after IDLE_AFTER_S and come back to the full rates at the first tick that
#: sees new audio (a note after a silence lights its key within 1 / IDLE_PLOT_HZ s)
IDLE_PLOT_HZ = 5
IDLE_METER_HZ = 1
IDLE_AFTER_S = 1.0
#: wait after the last change before the selected key is re-analysed, ms.
ANALYSIS_DEBOUNCE_MS = 350
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]*$")


def full_settings(settings: dict) -> dict:
    """Every parameter: the table defaults updated with ``settings``."""
    out = {p.name: (int(p.default) if p.integer else float(p.default)) for p in PARAMETERS}
    out.update(settings)
    return out


def apply_style(app) -> None:
    """Fusion style with a dark palette (readable on stage and in a dim studio)."""
    app.setStyle(QStyleFactory.create("Fusion"))
    pal = QPalette()
    base, window, text = QColor(30, 31, 34), QColor(43, 45, 48), QColor(222, 222, 222)
    for role, c in ((QPalette.Window, window), (QPalette.WindowText, text),
                    (QPalette.Base, base), (QPalette.AlternateBase, window),
                    (QPalette.ToolTipBase, QColor(250, 250, 230)),
                    (QPalette.ToolTipText, QColor(20, 20, 20)), (QPalette.Text, text),
                    (QPalette.Button, QColor(55, 57, 61)), (QPalette.ButtonText, text),
                    (QPalette.Highlight, QColor(64, 128, 210)),
                    (QPalette.HighlightedText, QColor(255, 255, 255)),
                    (QPalette.PlaceholderText, QColor(140, 140, 140))):
        pal.setColor(role, c)
    pal.setColor(QPalette.Disabled, QPalette.Text, QColor(120, 120, 120))
    pal.setColor(QPalette.Disabled, QPalette.ButtonText, QColor(120, 120, 120))
    pal.setColor(QPalette.Disabled, QPalette.WindowText, QColor(120, 120, 120))
    app.setPalette(pal)
    f = QFont(app.font())
    f.setPointSizeF(9.0)
    app.setFont(f)
    app.setStyleSheet("QGroupBox { font-weight: bold; margin-top: 4px; padding-top: 7px; "
                      "border: 1px solid #44474c; border-radius: 4px; } "
                      "QGroupBox::title { subcontrol-origin: margin; left: 8px; padding: 0 3px; }"
                      "QToolBar { spacing: 4px; padding: 2px; }"
                      "QPushButton:checked { background: #3d6fb6; }")


class _Bridge(QObject):
    """Signals emitted from worker threads, delivered on the GUI thread (queued)."""

    applied = Signal(list)
    analysed = Signal(object, int)


class _RefreshCombo(QComboBox):
    """A combo box that refreshes its items just before it opens."""

    def __init__(self, refresh, parent=None):
        super().__init__(parent)
        self._refresh = refresh

    def showPopup(self):  # noqa: N802
        self._refresh()
        super().showPopup()


class ControlPanel(QMainWindow):
    """The panel around a session (:class:`LiveSession` or ``RemoteSession``).

    Parameters
    ----------
    session : LiveSession or RemoteSession
        Engine and I/O (its output may already run).
    preset : pianosynth.presets.Preset, optional
        What ``session.settings`` came from (default: the built-in default).
    dialogs : bool
        False: no modal dialogs (tests, screenshots); errors go to the status bar only and
        unsaved changes are discarded unless :meth:`ask_unsaved` is replaced.
    startup_message : str
        An error to show once the window is up (e.g. a preset that did not load).
    analyse_at_start : bool
        Analyse the selected key right away (False: the caller calls
        :meth:`request_analysis` once audio runs).
    """

    def __init__(self, session: LiveSession, preset=None, dialogs: bool = True,
                 startup_message: str = "", analyse_at_start: bool = True):
        super().__init__()
        self.session = session
        self.dialogs = dialogs
        self.force_close = False
        self.selected_key = 60
        self.analysis = None
        self._analysis_running = False
        self._analysis_pending = False
        self._analysis_gen = 0
        self._analysis_thread = None
        self.bridge = _Bridge()
        self.bridge.applied.connect(self._on_applied)
        self.bridge.analysed.connect(self._on_analysed)
        session.applier.on_applied = self.bridge.applied.emit
        self.setWindowTitle("pianosynth")
        self.resize(1280, 800)

        # ---- preset state
        self.preset = preset or P.default_preset()
        self.preset_path: Path | None = self.preset.path
        self.saved_state = (full_settings(self.session.settings), dict(self.session.keys))

        # ---- widgets
        self.params = ParamPanel()
        self.params.set_values(session.settings)
        self.params.changed.connect(self._on_param)
        scroll = QScrollArea()
        scroll.setWidget(self.params)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(330)
        self.plots = Plots()
        split = QSplitter(Qt.Horizontal)
        split.addWidget(scroll)
        split.addWidget(self.plots)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([350, 930])
        split.setChildrenCollapsible(False)
        self.keyboard = PianoKeyboard()
        self.keyboard.noteOn.connect(self.session.note_on)
        self.keyboard.noteOff.connect(self.session.note_off)
        self.keyboard.keySelected.connect(self.select_key)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(4)
        lay.addWidget(split, 1)
        lay.addWidget(self.keyboard)
        self.setCentralWidget(central)
        self._build_toolbar()
        self._build_statusbar()
        self._refresh_presets()
        self._update_title()
        self.plots.show_keyboard_curves(design_keyboard(session.settings, session.keys))
        self.plots.set_selected_key(self.selected_key)

        # ---- timers
        self._seen_activity = -1            # Tap.activity at the last plot tick
        self._quiet_ticks = 0               # plot ticks since the tap last changed
        self.idle_timers = False            # the timers run at the idle rates
        self._label_state: dict = {}
        self.plot_timer = QTimer(self)
        self.plot_timer.timeout.connect(self._tick_plots)
        self.plot_timer.start(int(1000 / PLOT_HZ))
        self.meter_timer = QTimer(self)
        self.meter_timer.timeout.connect(self._tick_meters)
        self.meter_timer.start(int(1000 / METER_HZ))
        self._analysis_timer = QTimer(self)
        self._analysis_timer.setSingleShot(True)
        self._analysis_timer.timeout.connect(self._start_analysis)
        self._tick_meters()
        if startup_message:
            self.msg_label.setText(startup_message)
            QTimer.singleShot(0, lambda: self.show_error(startup_message))
        else:
            self.show_message(session.audio_status)
        if analyse_at_start:
            self.request_analysis(0)

    # ================================================================== layout
    def _build_toolbar(self):
        tb = QToolBar("main")
        tb.setMovable(False)
        self.addToolBar(tb)
        tb.addWidget(QLabel(" Preset "))
        self.preset_combo = QComboBox()
        self.preset_combo.setMinimumWidth(150)
        self.preset_combo.setToolTip("Factory presets are read-only; Save on one asks for a "
                                     "new name in your preset folder")
        self.preset_combo.activated.connect(self._on_preset_chosen)
        tb.addWidget(self.preset_combo)
        self.act_open = QAction("Open…", self)
        self.act_open.setToolTip("Load a preset .toml file")
        self.act_open.triggered.connect(self.open_preset_file)
        self.act_save = QAction("Save", self)
        self.act_save.setShortcut("Ctrl+S")
        self.act_save.triggered.connect(self.save)
        self.act_save_as = QAction("Save as…", self)
        self.act_save_as.setShortcut("Ctrl+Shift+S")
        self.act_save_as.setToolTip(f"Save into {P.user_preset_dir()}")
        self.act_save_as.triggered.connect(lambda: self.save_as())
        for a in (self.act_open, self.act_save, self.act_save_as):
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QLabel(" Audio "))
        self.audio_combo = _RefreshCombo(self._refresh_audio_devices)
        self.audio_combo.setMinimumWidth(170)
        self.audio_combo.setMaximumWidth(230)
        self.audio_combo.activated.connect(self._on_audio_chosen)
        tb.addWidget(self.audio_combo)
        tb.addWidget(QLabel(" MIDI "))
        self.midi_combo = _RefreshCombo(self._refresh_midi_ports)
        self.midi_combo.setMinimumWidth(150)
        self.midi_combo.setMaximumWidth(210)
        self.midi_combo.activated.connect(self._on_midi_chosen)
        tb.addWidget(self.midi_combo)
        tb.addSeparator()
        self.sustain_btn = QPushButton("Sustain")
        self.sustain_btn.setCheckable(True)
        self.sustain_btn.setToolTip("Sustain pedal (CC 64) on/off; also follows MIDI")
        self.sustain_btn.toggled.connect(self.session.sustain)
        tb.addWidget(self.sustain_btn)
        self.panic_btn = QPushButton("All off")
        self.panic_btn.setToolTip("Pedal up and all notes off")
        self.panic_btn.clicked.connect(self._panic)
        tb.addWidget(self.panic_btn)
        self._refresh_audio_devices()
        self._refresh_midi_ports()

    def _build_statusbar(self):
        sb = self.statusBar()
        self.msg_label = QLabel()
        self.msg_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        sb.addWidget(self.msg_label, 1)
        self.meter_labels = {}
        for name, tip in (("audio", "Audio output"),
                          ("cpu", "Audio callback time / block time (PortAudio's estimate)"),
                          ("voices", "Struck voices sounding / polyphony, + unstruck "
                                     "strings ringing in sympathy (pedal down)"),
                          ("underflows", "Audio blocks that arrived late at the device "
                                         "(audible clicks)"),
                          ("midi", "MIDI inputs")):
            lab = QLabel()
            lab.setToolTip(tip)
            lab.setMinimumWidth(70)
            sb.addPermanentWidget(lab)
            self.meter_labels[name] = lab

    # ================================================================== messages
    def show_message(self, text: str) -> None:
        self.msg_label.setStyleSheet("")
        self.msg_label.setText(text)
        self.msg_label.setToolTip(text)

    def show_error(self, text: str) -> None:
        """One clear line in the status bar (red) and, with dialogs, a message box."""
        self.msg_label.setStyleSheet("color: #ff7b72;")
        self.msg_label.setText(text)
        self.msg_label.setToolTip(text)
        if self.dialogs:
            QMessageBox.warning(self, "pianosynth", text)

    def ask_unsaved(self) -> str:
        """'save', 'discard' or 'cancel' for unsaved changes."""
        if not self.dialogs:
            return "discard"
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Question)
        box.setWindowTitle("pianosynth")
        box.setText(f"The preset “{self.preset.name}” has unsaved changes.")
        box.setInformativeText("Save them first?")
        box.setStandardButtons(QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel)
        box.setDefaultButton(QMessageBox.Save)
        ans = box.exec()
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(ans, "cancel")

    def ask_name(self, default: str) -> str | None:
        """A name for Save as (None: cancelled)."""
        if not self.dialogs:
            return None
        name, ok = QInputDialog.getText(self, "Save preset as",
                                        f"Name (saved in {P.user_preset_dir()}):",
                                        text=default)
        return name.strip() if ok and name.strip() else None

    def ask_overwrite(self, path: Path) -> bool:
        if not self.dialogs:
            return True
        return QMessageBox.question(self, "pianosynth", f"{path.name} exists. Replace it?",
                                    QMessageBox.Yes | QMessageBox.No) == QMessageBox.Yes

    # ================================================================== parameters
    def _on_param(self, name: str, value: float) -> None:
        self.session.set_param(name, value)
        self._update_title()
        self.plots.show_keyboard_curves(design_keyboard(self.session.settings,
                                                        self.session.keys))

    def _on_applied(self, names: list) -> None:
        if any(n == "<keys>" or n in _NOTE_PARAMS for n in names):
            self.request_analysis()

    # ================================================================== presets
    def is_dirty(self) -> bool:
        return (full_settings(self.session.settings), self.session.keys) != self.saved_state

    def _is_read_only(self) -> bool:
        path = self.preset_path
        if path is None:
            return True
        try:
            return path.resolve().parent == P.FACTORY_PRESET_DIR.resolve()
        except OSError:
            return True

    def _update_title(self) -> None:
        ro = " (factory, read-only)" if self._is_read_only() else ""
        dirty = "*" if self.is_dirty() else ""
        self.setWindowTitle(f"pianosynth — {self.preset.name}{dirty}{ro}")
        self.act_save.setToolTip("Save over this preset" if not self._is_read_only()
                                 else "Factory preset: Save asks for a new name")

    def _refresh_presets(self) -> None:
        combo = self.preset_combo
        combo.blockSignals(True)
        combo.clear()
        try:
            found = P.list_presets()
        except Exception:  # noqa: BLE001 - unreadable folder: still offer the default
            found = {"default": None}
        user_dir = P.user_preset_dir()
        for name, path in found.items():
            factory = path is None or Path(path).resolve().parent != user_dir.resolve()
            combo.addItem(f"{name}  (factory)" if factory else name, str(path or ""))
        if self.preset_path is not None and str(self.preset_path) not in \
                [combo.itemData(i) for i in range(combo.count())]:
            combo.addItem(f"{self.preset.name}  ({self.preset_path.name})",
                          str(self.preset_path))
        for i in range(combo.count()):
            data = combo.itemData(i)
            if (self.preset_path is None and data == "" and self.preset.name == "default") or \
                    (self.preset_path is not None and data == str(self.preset_path)):
                combo.setCurrentIndex(i)
                break
        combo.blockSignals(False)

    def _on_preset_chosen(self, index: int) -> None:
        data = self.preset_combo.itemData(index)
        if not self.load_preset(data or "default"):
            self._refresh_presets()

    def open_preset_file(self) -> None:
        start = str(P.user_preset_dir()) if P.user_preset_dir().is_dir() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open preset", start,
                                              "Presets (*.toml);;All files (*)")
        if path:
            self.load_preset(path)

    def _confirm_discard(self) -> bool:
        if not self.is_dirty():
            return True
        ans = self.ask_unsaved()
        if ans == "save":
            return self.save()
        return ans == "discard"

    def load_preset(self, name_or_path, confirm: bool = True) -> bool:
        """Load a named preset or a .toml file; a bad file is reported, nothing changes.

        Returns True when loaded.
        """
        if confirm and not self._confirm_discard():
            return False
        try:
            preset = P.load_preset(name_or_path)
        except PianosynthError as exc:
            self.show_error(f"Preset not loaded: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - never let a file take the panel down
            self.show_error(f"Preset not loaded: {name_or_path}: {type(exc).__name__}: {exc}")
            return False
        self.set_preset(preset)
        msg = f"Loaded preset “{preset.name}”" + (f" from {preset.path}" if preset.path else
                                                   " (built in)")
        if preset.velocity:
            msg += ("; its [velocity] table sets the velocity curve (the velocity sliders "
                    "act again with a preset without one)")
        for w in preset.warnings or []:
            msg += f"; warning: {w}"
        self.show_message(msg)
        return True

    def set_preset(self, preset) -> None:
        settings = full_settings(preset.settings)
        self.preset = preset
        self.preset_path = preset.path
        try:
            keys = preset.key_overrides()       # [keys.N] merged over the [tuning] table
        except PianosynthError as exc:
            self.show_error(f"Tuning of preset {preset.name!r} not applied: {exc}")
            keys = {int(k): dict(v) for k, v in preset.keys.items()}
        self.session.set_all(settings, keys, preset.velocity_points())
        self.params.set_values(settings)
        self.saved_state = (settings, keys)
        self._refresh_presets()
        self._update_title()
        self.plots.show_keyboard_curves(design_keyboard(settings, keys))

    def _current_preset(self, name: str):
        # the panel edits parameters only: [keys.N], [tuning] and [velocity] are kept as
        # loaded (the engine's key overrides hold the tuning's f0 too: not saved as keys)
        return P.Preset(name=name, settings=dict(self.session.settings),
                        keys={int(k): dict(v) for k, v in self.preset.keys.items()},
                        description=self.preset.description, path=self.preset.path,
                        tuning=dict(self.preset.tuning), velocity=dict(self.preset.velocity))

    def save(self) -> bool:
        """Save over the current preset; factory presets go through :meth:`save_as`."""
        if self._is_read_only():
            return self.save_as()
        return self._write(self._current_preset(self.preset.name), self.preset_path)

    def save_as(self, name: str | None = None) -> bool:
        """Save into the user preset folder under ``name`` (asked for when None)."""
        if name is None:
            default = self.preset.name if not self._is_read_only() else \
                f"{self.preset.name}-mine"
            name = self.ask_name(default)
            if name is None:
                return False
        if not _NAME_RE.match(name) or name.endswith(".toml"):
            self.show_error(f"Not saved: {name!r} is not a usable preset name (letters, "
                            "digits, space, '.', '_' and '-')")
            return False
        folder = P.user_preset_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.show_error(f"Not saved: cannot create {folder}: {exc.strerror or exc}")
            return False
        path = folder / f"{name}.toml"
        if path.exists() and path != self.preset_path and not self.ask_overwrite(path):
            return False
        return self._write(self._current_preset(name), path)

    def _write(self, preset, path: Path) -> bool:
        try:
            written = P.save_preset(preset, path)
        except PianosynthError as exc:
            self.show_error(f"Not saved: {exc}")
            return False
        preset.path = Path(written)
        self.preset = preset
        self.preset_path = Path(written)
        self.saved_state = (full_settings(preset.settings), dict(self.session.keys))
        self._refresh_presets()
        self._update_title()
        self.show_message(f"Saved preset “{preset.name}” to {written}")
        return True

    # ================================================================== devices
    def _refresh_audio_devices(self) -> None:
        combo = self.audio_combo
        combo.blockSignals(True)
        combo.clear()
        current = self.session.output_device
        for d in self.session.output_devices():
            combo.addItem(f"{d['name']} ({d['hostapi']})", d["index"])
        combo.addItem("No audio (silent clock)", -1)
        idx = combo.findData(current)
        combo.setCurrentIndex(idx if idx >= 0 else combo.count() - 1)
        combo.setToolTip(self.session.audio_status)
        combo.blockSignals(False)

    def audio_started(self) -> None:
        """The session's output was (re)started: refresh the device and MIDI selectors."""
        self._refresh_audio_devices()
        self._refresh_midi_ports()
        self._tick_meters()

    def _on_audio_chosen(self, index: int) -> None:
        dev = self.audio_combo.itemData(index)
        if self.session.output_device == dev and dev != -1:
            return
        if dev == -1:
            status = self.session.open_audio(mode="silent")
        else:
            status = self.session.open_audio(str(dev))
        if dev != -1 and status.startswith("no audio output"):
            self.show_error(status)
        else:
            self.show_message(status)
        self._refresh_audio_devices()
        self.request_analysis()

    def _refresh_midi_ports(self) -> None:
        combo = self.midi_combo
        combo.blockSignals(True)
        combo.clear()
        api, ports = self.session.midi_ports()
        choice = tuple(self.session.midi_choice)
        combo.addItem("All hardware inputs", ("hw", None))
        for p in ports:
            combo.addItem(p, ("port", p))
        if api is not None:
            combo.addItem("Virtual port pianosynth:midi_in", ("virtual", None))
        combo.addItem("No MIDI input", ("off", None))
        if choice[0] == "port" and choice[1] not in ports:
            combo.insertItem(1, f"{choice[1]} (not present)", choice)
        for i in range(combo.count()):
            if tuple(combo.itemData(i)) == choice:
                combo.setCurrentIndex(i)
                break
        combo.setToolTip(self.session.midi_status)
        combo.blockSignals(False)

    def _on_midi_chosen(self, index: int) -> None:
        kind, name = self.midi_combo.itemData(index)
        if kind == "hw":
            status = self.session.open_midi(None)
        elif kind == "port":
            status = self.session.open_midi(name)
        elif kind == "virtual":
            status = self.session.open_midi("\x00none", virtual=True)
        else:
            status = self.session.open_midi("")
        self.show_message(status)
        self.midi_combo.setToolTip(status)

    # ================================================================== playing
    def _panic(self) -> None:
        self.sustain_btn.setChecked(False)
        self.session.panic()

    def select_key(self, key: int) -> None:
        if key == self.selected_key:
            return
        self.selected_key = int(key)
        self.keyboard.set_selected(key)
        self.plots.set_selected_key(key)
        self.request_analysis()

    # ================================================================== analysis worker
    def request_analysis(self, delay_ms: int = ANALYSIS_DEBOUNCE_MS) -> None:
        self._analysis_timer.start(delay_ms)

    def _start_analysis(self) -> None:
        if self._analysis_running:
            self._analysis_pending = True
            return
        self._analysis_running = True
        self._analysis_pending = False
        self._analysis_gen += 1
        gen = self._analysis_gen
        args = (dict(self.session.settings), dict(self.session.keys), self.selected_key,
                int(self.session.sample_rate))
        emit = self.bridge.analysed.emit

        def work():
            lower_thread_priority()
            try:
                res = analyse_key(args[0], args[1], args[2], fs=args[3])
            except Exception as exc:  # noqa: BLE001 - shown in the status bar
                res = exc
            emit(res, gen)

        self._analysis_thread = threading.Thread(target=work, name="pianosynth-key-analysis",
                                                 daemon=True)
        self._analysis_thread.start()

    def _on_analysed(self, res, gen: int) -> None:
        self._analysis_running = False
        if isinstance(res, Exception):
            self.show_error(f"Key analysis failed: {type(res).__name__}: {res}")
        else:
            self.analysis = res
            self.plots.show_key_analysis(res)
        if self._analysis_pending:
            self._start_analysis()

    def run_analysis_now(self):
        """Analyse the selected key on this thread (tests, scripts); returns the result."""
        res = analyse_key(dict(self.session.settings), dict(self.session.keys),
                          self.selected_key, fs=int(self.session.sample_rate))
        self.analysis = res
        self.plots.show_key_analysis(res)
        return res

    # ================================================================== timers
    def _tick_plots(self) -> None:
        s = self.session
        if not s.ready:
            return
        activity = s.tap.activity
        if activity == self._seen_activity:
            # the engine rendered nothing since the last tick (idle: the output skips it and
            # only counts silent frames): the plots, lit keys and pedal already show it
            self._quiet_ticks += 1
            if not self.idle_timers and self._quiet_ticks * self.plot_timer.interval() >= \
                    1000 * IDLE_AFTER_S:
                self._set_idle_timers(True)
            return
        self._seen_activity = activity
        self._quiet_ticks = 0
        if self.idle_timers:
            self._set_idle_timers(False)
        self.plots.update_live(s.tap, float(s.sample_rate))
        # a copy first: the audio process writes keys_down (shared memory) meanwhile, and
        # numpy's nonzero raises when the count changes under it (seen in a 10-minute soak)
        self.keyboard.set_lit(np.flatnonzero(s.tap.keys_down.copy()).tolist())
        if bool(s.tap.sustain) != self.sustain_btn.isChecked():
            self.sustain_btn.blockSignals(True)
            self.sustain_btn.setChecked(bool(s.tap.sustain))
            self.sustain_btn.blockSignals(False)

    def _set_idle_timers(self, idle: bool) -> None:
        """Slow the plot and meter timers down while nothing new is rendered, or bring them
        back to their full rates (the GUI then costs next to nothing in silence)."""
        self.idle_timers = idle
        self.plot_timer.setInterval(int(1000 / (IDLE_PLOT_HZ if idle else PLOT_HZ)))
        self.meter_timer.setInterval(int(1000 / (IDLE_METER_HZ if idle else METER_HZ)))
        if not idle:
            self._tick_meters()

    def _set_label(self, name: str, text: str, style: str | None = None,
                   tip: str | None = None) -> None:
        """Set a meter label's text, style sheet and tool tip only when they change (a
        style sheet set again re-polishes the widget even when it is the same)."""
        state = (text, style, tip)
        if self._label_state.get(name) == state:
            return
        self._label_state[name] = state
        lab = self.meter_labels[name]
        lab.setText(text)
        if style is not None:
            lab.setStyleSheet(style)
        if tip is not None:
            lab.setToolTip(tip)

    def _tick_meters(self) -> None:
        m = self.session.meters()
        audio = m.get("audio", self.session.audio_status)
        if m.get("active") and not audio.startswith("no audio output"):
            fs, blk = m.get("sample_rate", 0), m.get("block_frames", 0)
            self._set_label("audio", f"● {fs / 1000:g} kHz" + (f" / {blk}" if blk else ""),
                            "color: #7ee787;", audio)
        else:
            self._set_label("audio", "● no audio" if audio.startswith("no audio output")
                            else "● audio off", "color: #f0a030;", audio)
        self._set_label("cpu", f"CPU {100 * m['cpu_load']:.0f}%")
        symp = int(m.get("sympathetic", 0))
        self._set_label("voices", f"voices {m['voices'] - symp}/{m['polyphony']}" +
                        (f" + {symp} sympathetic" if symp else ""))
        u = m["underflows"]
        self._set_label("underflows", f"underflows {u}", "color: #ff7b72;" if u else "")
        midi = m["midi"]
        self._set_label("midi", midi if len(midi) < 40 else midi[:37] + "…", None, midi)
        if m["error"] is not None and not getattr(self, "_error_shown", False):
            self._error_shown = True
            self.show_error(f"Audio stopped by an error: {m['error']!r}")
        if self.session.applier.error is not None:
            err, self.session.applier.error = self.session.applier.error, None
            self.show_error(f"Parameter change failed: {err}")

    # ================================================================== closing
    def closeEvent(self, ev):  # noqa: N802
        if not self.force_close and not self._confirm_discard():
            ev.ignore()
            return
        self.plot_timer.stop()
        self.meter_timer.stop()
        self._analysis_timer.stop()
        self._analysis_pending = False
        if self._analysis_thread is not None:       # its result signal needs the bridge
            self._analysis_thread.join(timeout=10.0)
        self.session.applier.on_applied = None
        ev.accept()


_NOTE_PARAMS = {p.name for p in PARAMETERS if p.apply == "note"}

__all__ = ["ControlPanel", "apply_style", "full_settings", "note_name"]

