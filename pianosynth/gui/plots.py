"""The panel's plots (pyqtgraph): output, hammer, the selected key, and the whole keyboard.

- Oscilloscope and spectrum of the output, from the audio tap's ring buffer.
- Hammer force of the last struck note (Bank et al. 2003, Fig. 2).
- For the selected key, from an offline render on a worker thread: measured partial
  frequencies against ``k·f0·sqrt(1 + B·k²)`` (eq. 12) as cents above the harmonic series
  ``k·f0``, and the partials' decay curves (heterodyne envelopes, Sec. 4.1).
- Keyboard-wide design curves for the current settings: B, T60 at f0, felt stiffness K.

Everything here runs on the GUI thread and only reads numpy arrays handed to it.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QGraphicsItem, QGridLayout, QWidget

from .keyanalysis import KeyAnalysis, cents
from .session import note_name

pg.setConfigOptions(antialias=False, background="#1e1f22", foreground="#c8c8c8")

SCOPE_MS = 20.0
FFT_N = 8192
SPEC_BINS = 360
SPEC_FLOOR_DB = -110.0
#: spectrum display release, dB per update (peaks fall slowly so they can be read).
SPEC_RELEASE_DB = 2.0
PARTIAL_COLORS = ["#f0a030", "#58a6ff", "#7ee787", "#ff7b72", "#d2a8ff", "#e3e35b"]
TICK_FONT = QFont()
TICK_FONT.setPointSizeF(7.5)


def _style(plot: pg.PlotWidget, title: str, bottom: str, left: str) -> pg.PlotItem:
    it = plot.getPlotItem()
    it.setTitle(title, size="8.5pt", color="#e6e6e6")
    for name, text in (("bottom", bottom), ("left", left)):
        ax = it.getAxis(name)
        ax.setTickFont(TICK_FONT)
        ax.enableAutoSIPrefix(False)
        ax.setLabel(text, **{"font-size": "7.5pt", "color": "#a8a8a8"})
        # axes repaint whenever a curve changes; replaying their text is the panel's
        # largest GUI-thread cost, so keep them as cached pixmaps
        ax.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
    it.getAxis("left").setWidth(44)
    it.showGrid(x=True, y=True, alpha=0.18)
    it.setMenuEnabled(False)
    it.hideButtons()
    it.layout.setContentsMargins(2, 2, 6, 2)
    plot.setMinimumSize(180, 120)
    return it


def log_ticks(lo: float, hi: float):
    """Major ticks 1-2-5 x 10^n between lo and hi (> 0), for a log axis (values in log10)."""
    lo, hi = max(lo, 1e-30), max(hi, lo * 1.0001)
    span = np.log10(hi / lo)
    steps = (1,) if span > 3 else (1, 3) if span > 1.5 else (1, 2, 5)
    ticks = []
    for e in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1):
        for m in steps:
            v = m * 10.0 ** e
            if lo <= v <= hi:
                ticks.append((np.log10(v), _tick_text(m, e)))
    return [ticks, []]


_SUP = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _tick_text(m: int, e: int) -> str:
    """1-2-5 tick label: plain for 0.01..9999, else m·10ⁿ."""
    if -2 <= e <= 3:
        return f"{m * 10.0 ** e:g}"
    return ("" if m == 1 else f"{m}·") + "10" + str(e).translate(_SUP)


def _key_ticks():
    return [[(k, f"C{k // 12 - 1}") for k in range(24, 109, 12)] + [(21, "A0")]]


class Plots(QWidget):
    """The grid of plots; ``update_live`` at the GUI timer rate, the rest on demand."""

    def __init__(self, parent=None):
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        mk = pg.PlotWidget
        # --- output
        self.scope = mk()
        _style(self.scope, "Output · oscilloscope", "time (ms)", "amplitude (FS)")
        self.scope_curve = self.scope.plot(pen=pg.mkPen("#7ee787", width=1))
        self.scope.setXRange(0, SCOPE_MS, padding=0)
        self.scope.setYRange(-0.1, 0.1)
        self._scope_peak = 0.05
        self.spec = mk()
        _style(self.spec, "Output · spectrum", "frequency (Hz)", "level (dBFS)")
        self.spec.setLogMode(x=True, y=False)
        self.spec_curve = self.spec.plot(pen=pg.mkPen("#58a6ff", width=1),
                                         fillLevel=SPEC_FLOOR_DB,
                                         brush=pg.mkBrush(88, 166, 255, 50))
        self.spec.setXRange(np.log10(20), np.log10(20000), padding=0)
        self.spec.setYRange(SPEC_FLOOR_DB, 0, padding=0)
        self._spec_db = None
        self._spec_edges = None
        self.force = mk()
        _style(self.force, "Hammer force · last note", "time (ms)", "force (N)")
        self.force_curve = self.force.plot(pen=pg.mkPen("#f0a030", width=1.5))
        self._force_seq = -1
        self._last_written = -1
        self._shown_silence = False
        # --- selected key
        self.partials = mk()
        _style(self.partials, "Partials of the selected key", "partial number k",
               "cents above k·f0")
        self.theory_curve = self.partials.plot(pen=pg.mkPen("#c8c8c8", width=1.5))
        self.measured_curve = self.partials.plot(pen=None, symbol="o", symbolSize=6,
                                                 symbolBrush="#f0a030", symbolPen=None)
        leg = self.partials.getPlotItem().addLegend(offset=(8, 6), labelTextSize="7.5pt")
        leg.addItem(self.theory_curve, "k·f0·√(1+Bk²)")
        leg.addItem(self.measured_curve, "measured")
        self.decay = mk()
        _style(self.decay, "Partial decay of the selected key", "time (s)", "level (dBFS)")
        self.decay_curves = []
        dleg = self.decay.getPlotItem().addLegend(offset=(-6, 2), labelTextSize="7.5pt",
                                                  colCount=4, verSpacing=-6)
        for i, c in enumerate(PARTIAL_COLORS):
            curve = self.decay.plot(pen=pg.mkPen(c, width=1.2))
            self.decay_curves.append(curve)
            dleg.addItem(curve, f"k={i + 1}")
        self.t60_line = self.decay.plot(pen=pg.mkPen("#c8c8c8", width=1, style=Qt.DashLine))
        dleg.addItem(self.t60_line, "design T60, k=1")
        # --- keyboard curves
        self.kb_b = mk()
        _style(self.kb_b, "Inharmonicity B across the keys", "key", "B")
        self.kb_t60 = mk()
        _style(self.kb_t60, "String T60 at f0", "key", "T60 (s)")
        self.kb_k = mk()
        _style(self.kb_k, "Felt stiffness K", "key", "K (N/m^p)")
        self.kb_curves = {}
        self._kb_axes = {}
        self.kb_lines = []
        for w, field, color in ((self.kb_b, "inharmonicity_b", "#d2a8ff"),
                                (self.kb_t60, "t60_f0_s", "#7ee787"),
                                (self.kb_k, "felt_stiffness_k", "#ff7b72")):
            w.setLogMode(x=False, y=True)
            w.getPlotItem().getAxis("bottom").setTicks(_key_ticks())
            w.setXRange(21, 108, padding=0.02)
            self.kb_curves[field] = w.plot(pen=pg.mkPen(color, width=1.5))
            self._kb_axes[field] = w.getPlotItem().getAxis("left")
            line = pg.InfiniteLine(60, angle=90, pen=pg.mkPen("#f0a030", width=1))
            w.addItem(line)
            self.kb_lines.append(line)
        # layout: 6 columns; 3 output plots, 2 key plots, 3 keyboard plots
        grid.addWidget(self.scope, 0, 0, 1, 2)
        grid.addWidget(self.spec, 0, 2, 1, 2)
        grid.addWidget(self.force, 0, 4, 1, 2)
        grid.addWidget(self.partials, 1, 0, 1, 3)
        grid.addWidget(self.decay, 1, 3, 1, 3)
        grid.addWidget(self.kb_b, 2, 0, 1, 2)
        grid.addWidget(self.kb_t60, 2, 2, 1, 2)
        grid.addWidget(self.kb_k, 2, 4, 1, 2)
        for r in range(3):
            grid.setRowStretch(r, 1)
        for c in range(6):
            grid.setColumnStretch(c, 1)

    # ------------------------------------------------------------------ live (timer)
    def update_live(self, tap, fs: float) -> None:
        """Oscilloscope, spectrum and hammer force from the audio tap."""
        if tap.force_seq != self._force_seq:         # (no copy of the trace otherwise)
            force, seq, key, vel = tap.force_trace()
            self._force_seq = seq
            self.show_force(force, fs, key, vel)
        written = tap.written
        if written == self._last_written:
            return                                # no new audio: nothing to redraw
        self._last_written = written
        n_scope = int(SCOPE_MS * 1e-3 * fs)
        x = tap.latest(max(FFT_N, 2 * n_scope))
        if not np.any(x[-FFT_N // 4:]) and self._shown_silence:
            return                                # silence already on screen
        self._shown_silence = not np.any(x[-FFT_N // 4:])
        self._update_scope(x, n_scope, fs)
        self._update_spectrum(x[-FFT_N:], fs)

    def _update_scope(self, x, n, fs):
        seg = x[-2 * n:]
        # trigger: the last rising zero crossing that leaves a full window after it
        s = seg[: n + 1]
        rising = np.flatnonzero((s[:-1] < 0) & (s[1:] >= 0))
        i0 = int(rising[-1]) + 1 if rising.size else n
        y = seg[i0:i0 + n]
        t = np.arange(y.size) * (1e3 / fs)
        self.scope_curve.setData(t, y)
        peak = float(np.max(np.abs(seg))) if seg.size else 0.0
        target = max(peak * 1.15, 0.01)
        if target > self._scope_peak or target < 0.5 * self._scope_peak:
            self._scope_peak = target if target > self._scope_peak else \
                0.85 * self._scope_peak + 0.15 * target
            self.scope.setYRange(-self._scope_peak, self._scope_peak, padding=0)

    def _update_spectrum(self, x, fs):
        if self._spec_edges is None or self._spec_fs != fs:
            f = np.fft.rfftfreq(FFT_N, 1.0 / fs)
            edges = np.unique(np.searchsorted(f, np.geomspace(20.0, fs / 2, SPEC_BINS)))
            self._spec_edges = edges[edges < f.size]
            self._spec_f = f[self._spec_edges]
            self._spec_fs = fs
            self._win = np.hanning(FFT_N).astype(np.float32)
            self._win_gain = 2.0 / float(self._win.sum())
            self._spec_db = None
        X = np.abs(np.fft.rfft(x * self._win)) * self._win_gain
        peak = np.maximum.reduceat(X, self._spec_edges)
        db = 20.0 * np.log10(peak + 1e-12)
        np.maximum(db, SPEC_FLOOR_DB, out=db)
        if self._spec_db is None:
            self._spec_db = db
        else:
            self._spec_db = np.maximum(db, self._spec_db - SPEC_RELEASE_DB)
        self.spec_curve.setData(self._spec_f, self._spec_db)

    def show_force(self, force, fs, key, vel) -> None:
        if force.size == 0:
            return
        t = np.arange(force.size) * (1e3 / fs)
        nz = np.flatnonzero(force > 1e-3 * max(float(force.max()), 1e-12))
        if nz.size:
            t_end = min(force.size, int(nz[-1]) + max(2, int(0.3 * (nz[-1] - nz[0]))))
            contact_ms = (nz[-1] - nz[0] + 1) * 1e3 / fs
        else:
            t_end, contact_ms = force.size, 0.0
        self.force_curve.setData(t[:t_end], force[:t_end])
        name = note_name(key) if key >= 0 else "?"
        self.force.getPlotItem().setTitle(
            f"Hammer force · {name} vel {vel}: {force.max():.1f} N, {contact_ms:.2f} ms",
            size="8.5pt", color="#e6e6e6")
        self.force.setXRange(0, t[t_end - 1] if t_end else 1, padding=0.02)
        self.force.setYRange(0, max(float(force.max()) * 1.1, 1e-3), padding=0)

    # ------------------------------------------------------------------ selected key
    def show_key_analysis(self, r: KeyAnalysis) -> None:
        harm = r.k * r.f0_hz
        self.theory_curve.setData(r.k.astype(float), cents(r.theory_hz, harm))
        meas = cents(r.measured_hz, harm)
        ok = np.isfinite(meas)
        self.measured_curve.setData(r.k[ok].astype(float), meas[ok])
        self.partials.getPlotItem().setTitle(
            f"Partials of {note_name(r.key)}: f0 {r.f0_hz:.2f} Hz, B {r.inharmonicity_b:.2e}",
            size="8.5pt", color="#e6e6e6")
        self.partials.enableAutoRange()
        keep = r.t_s <= (r.t_s[-1] - 0.1 if r.t_s.size else 0.0)   # filter edge at the end
        for i, c in enumerate(self.decay_curves):
            if i < r.env_db.shape[0]:
                c.setData(r.t_s[keep], r.env_db[i][keep])
            else:
                c.setData([], [])
        if r.env_db.shape[0] and r.t_s.size:
            i0 = int(np.searchsorted(r.t_s, 0.05))
            i0 = min(i0, r.t_s.size - 1)
            lv = float(r.env_db[0, i0])
            t_end = float(r.t_s[keep][-1]) if keep.any() else float(r.t_s[-1])
            t = np.array([r.t_s[i0], t_end])
            self.t60_line.setData(t, lv - 60.0 * (t - t[0]) / r.t60_f0_s)
            top = float(np.nanmax(r.env_db[:, keep])) + 22      # room for the legend
            self.decay.setYRange(max(top - 100.0, -150.0), top, padding=0)
            self.decay.setXRange(0, t_end, padding=0)
        self.decay.getPlotItem().setTitle(
            f"Partial decay of {note_name(r.key)} (designed T60 at f0 {r.t60_f0_s:.1f} s)",
            size="8.5pt", color="#e6e6e6")

    # ------------------------------------------------------------------ keyboard curves
    def show_keyboard_curves(self, kp) -> None:
        keys = np.asarray(kp.keys, float)
        for field, curve in self.kb_curves.items():
            y = np.asarray(getattr(kp, field), float)
            ok = np.isfinite(y) & (y > 0)
            curve.setData(keys[ok], y[ok])
            if ok.any():
                lo, hi = float(y[ok].min()), float(y[ok].max())
                if hi / lo < 1.5:
                    lo, hi = lo / 1.5, hi * 1.5
                w = curve.getViewBox()
                w.setYRange(np.log10(lo), np.log10(hi), padding=0.08)
                self._kb_axes[field].setTicks(log_ticks(lo / 1.3, hi * 1.3))

    def set_selected_key(self, key: int) -> None:
        for line in self.kb_lines:
            line.setValue(key)
