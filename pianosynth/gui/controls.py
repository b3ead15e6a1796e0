"""Parameter controls built from the parameter table (:data:`pianosynth.engine.params.PARAMETERS`).

One row per parameter: name, slider, spin box with unit. Sliders of positive ranges spanning
a factor of 10 or more move logarithmically (a scale of 0.1..10 has 1 at the centre). Each
group of the table becomes one box whose title says when its changes are heard ("live" ones
are smoothed by the engine, "note" ones act from the next struck note). A new entry in the
table gets a control without any change here.
"""
from __future__ import annotations

import math

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QGridLayout, QGroupBox, QLabel,
                               QSlider, QSpinBox, QVBoxLayout, QWidget)

from ..engine.params import PARAMETERS, Param

SLIDER_STEPS = 1000

#: shorter names for the panel; a parameter missing here gets one made from its name.
LABELS = {
    "a4_hz": "A4 pitch",
    "stretch_scale": "Stretch",
    "felt_stiffness_scale": "Felt stiffness K",
    "felt_exponent_offset": "Felt exponent p +",
    "hammer_mass_scale": "Hammer mass",
    "strike_position": "Strike position",
    "velocity_min_m_s": "Velocity at vel 1",
    "velocity_max_m_s": "Velocity at vel 127",
    "velocity_curve": "Velocity curve",
    "inharmonicity_scale": "Inharmonicity B",
    "t60_scale": "T60 at f0",
    "t60_high_scale": "T60 high",
    "unison_detune_cents": "Unison detune",
    "resonators_on": "Beating resonators",
    "resonator_count": "Resonators / key",
    "damper_t60_s": "Damper T60",
    "soundboard_level_db": "Level",
    "soundboard_t60_s": "FDN T60",
    "soundboard_balance": "Low / high",
    "master_gain_db": "Master gain",
    "polyphony": "Polyphony",
    "sympathetic_coupling": "Sympathetic res.",
    "damper_noise_db": "Damper noise",
    "pedal_noise_db": "Pedal noise",
}

GROUP_TITLES = {"tuning": "Tuning", "hammer": "Hammer", "string": "String",
                "noises": "Noises", "soundboard": "Soundboard", "output": "Output",
                "voices": "Voices"}

APPLY_TEXT = {
    "live": "applies at once (smoothed, no click)",
    "note": "applies from the next note",
    "restart": "applies at once (voice limit; sounding voices are kept)",
}
APPLY_SHORT = {"live": "live", "note": "next note", "restart": "at once"}

SUFFIX = {"x": " ×", "": "", "bool": "", "of length": " of L", "voices": "", "cent": " cent"}


def label_for(p: Param) -> str:
    if p.name in LABELS:
        return LABELS[p.name]
    words = p.name
    for unit in ("_hz", "_db", "_s", "_m_s", "_cents", "_kg"):
        if words.endswith(unit):
            words = words[: -len(unit)]
    return words.replace("_", " ").capitalize()


def unit_suffix(p: Param) -> str:
    return SUFFIX.get(p.unit, f" {p.unit}")


def _fmt(x: float) -> str:
    return f"{x:g}"


def tooltip_for(p: Param) -> str:
    unit = "" if p.unit in ("", "x", "bool") else f" {p.unit}"
    return (f"<b>{p.name}</b><br>{p.doc}<br>Range {_fmt(p.min)} to {_fmt(p.max)}{unit}, "
            f"default {_fmt(p.default)}{unit}.<br><i>{APPLY_TEXT.get(p.apply, p.apply)}"
            "</i><br>Double-click the name to reset.")


class _ResetLabel(QLabel):
    doubleClicked = Signal()

    def mouseDoubleClickEvent(self, event):  # noqa: N802 - Qt name
        self.doubleClicked.emit()


class ParamControl(QObject):
    """Slider + spin box (or a check box for on/off) for one :class:`Param`.

    Signals
    -------
    changed(name, value)
        The user set a new value (not emitted by :meth:`set_value`).
    """

    changed = Signal(str, float)

    def __init__(self, param: Param, parent=None):
        super().__init__(parent)
        self.param = p = param
        # the row's widgets are laid out by the ParamPanel's grid; this object owns the logic
        self.label = _ResetLabel(label_for(p))
        self.label.setToolTip(tooltip_for(p))
        self.label.doubleClicked.connect(lambda: self._user_set(p.default))
        self.slider = None
        self.spin = None
        self.check = None
        self.log = p.min > 0 and p.max / p.min >= 10 and not p.integer
        if p.unit == "bool":
            self.check = QCheckBox("on")
            self.check.setToolTip(tooltip_for(p))
            self.check.toggled.connect(lambda on: self._user_set(1.0 if on else 0.0))
        else:
            self.slider = QSlider(Qt.Horizontal)
            self.slider.setToolTip(tooltip_for(p))
            if p.integer and p.max - p.min <= SLIDER_STEPS:
                self.slider.setRange(int(p.min), int(p.max))
            else:
                self.slider.setRange(0, SLIDER_STEPS)
            if p.integer:
                self.spin = QSpinBox()
                self.spin.setRange(int(p.min), int(p.max))
            else:
                self.spin = QDoubleSpinBox()
                self.spin.setDecimals(self._decimals())
                self.spin.setRange(p.min, p.max)
                if self.log:
                    self.spin.setStepType(QDoubleSpinBox.AdaptiveDecimalStepType)
                else:
                    self.spin.setSingleStep(self._step())
            self.spin.setSuffix(unit_suffix(p))
            self.spin.setToolTip(tooltip_for(p))
            self.spin.setKeyboardTracking(False)
            self.spin.setAlignment(Qt.AlignRight)
            self.spin.setFixedWidth(98)
            self.spin.setFixedHeight(21)
            self.slider.valueChanged.connect(self._on_slider)
            self.spin.valueChanged.connect(self._on_spin)
        self.set_value(p.default)

    # ------------------------------------------------------------------ mapping
    def _decimals(self) -> int:
        p = self.param
        step = (p.min if self.log else (p.max - p.min)) / (100 if self.log else SLIDER_STEPS)
        return int(min(4, max(0, math.ceil(-math.log10(step)))))

    def _step(self) -> float:
        p = self.param
        raw = (p.max - p.min) / 100.0
        mag = 10.0 ** math.floor(math.log10(raw))
        return mag * (5 if raw / mag >= 5 else 2 if raw / mag >= 2 else 1)

    def to_slider(self, v: float) -> int:
        p = self.param
        if p.integer and p.max - p.min <= SLIDER_STEPS:
            return int(round(v))
        if self.log:
            f = math.log(v / p.min) / math.log(p.max / p.min)
        else:
            f = (v - p.min) / (p.max - p.min)
        return int(round(min(max(f, 0.0), 1.0) * SLIDER_STEPS))

    def from_slider(self, pos: int) -> float:
        p = self.param
        if p.integer and p.max - p.min <= SLIDER_STEPS:
            return float(pos)
        f = pos / SLIDER_STEPS
        v = p.min * (p.max / p.min) ** f if self.log else p.min + f * (p.max - p.min)
        return float(round(v)) if p.integer else v

    # ------------------------------------------------------------------ value
    def value(self) -> float:
        if self.check is not None:
            return 1.0 if self.check.isChecked() else 0.0
        return float(self.spin.value())

    def set_value(self, v: float) -> None:
        """Show ``v`` without emitting :attr:`changed`."""
        if self.check is not None:
            self.check.blockSignals(True)
            self.check.setChecked(v >= 0.5)
            self.check.blockSignals(False)
            return
        for w, x in ((self.spin, int(round(v)) if self.param.integer else v),
                     (self.slider, self.to_slider(v))):
            w.blockSignals(True)
            w.setValue(x)
            w.blockSignals(False)

    def _user_set(self, v: float) -> None:
        if self.check is not None:
            self.check.blockSignals(True)
            self.check.setChecked(v >= 0.5)
            self.check.blockSignals(False)
            self.changed.emit(self.param.name, float(v))
        else:
            self.spin.setValue(v)          # -> _on_spin -> changed

    def _on_slider(self, pos: int) -> None:
        v = self.from_slider(pos)
        self.spin.blockSignals(True)
        self.spin.setValue(v)
        self.spin.blockSignals(False)
        self.changed.emit(self.param.name, float(self.spin.value()))

    def _on_spin(self, v) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(self.to_slider(float(v)))
        self.slider.blockSignals(False)
        self.changed.emit(self.param.name, float(v))


class ParamPanel(QWidget):
    """Every parameter of the table, grouped in boxes by ``group``.

    Signals
    -------
    changed(name, value)
        Forwarded from the controls.
    """

    changed = Signal(str, float)

    def __init__(self, parameters=PARAMETERS, parent=None):
        super().__init__(parent)
        self.controls: dict[str, ParamControl] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 0, 2, 2)
        lay.setSpacing(2)
        # one box per (group, timing): a group whose parameters act at different times is
        # split, so every box title says when its changes are heard
        boxes: dict[tuple[str, str], list[Param]] = {}
        for p in parameters:
            boxes.setdefault((p.group, p.apply), []).append(p)
        split = {g for g, _ in boxes if sum(1 for h, _ in boxes if h == g) > 1}
        for (group, apply), params in boxes.items():
            title = (f"{GROUP_TITLES.get(group, group.capitalize())}  ·  "
                     f"{APPLY_SHORT.get(apply, apply)}")
            box = QGroupBox(title)
            box.setToolTip(APPLY_TEXT.get(apply, apply).capitalize() +
                           (f" (the {group} parameters acting at other times are in the "
                            "box next to this one)" if group in split else ""))
            grid = QGridLayout(box)
            grid.setContentsMargins(6, 1, 4, 2)
            grid.setHorizontalSpacing(6)
            grid.setVerticalSpacing(1)
            grid.setColumnStretch(1, 1)
            for row, p in enumerate(params):
                c = ParamControl(p, self)
                self.controls[p.name] = c
                c.changed.connect(self.changed)
                grid.addWidget(c.label, row, 0)
                if c.check is not None:
                    grid.addWidget(c.check, row, 1, 1, 2)
                else:
                    grid.addWidget(c.slider, row, 1)
                    grid.addWidget(c.spin, row, 2)
            lay.addWidget(box)
        # one label width for all boxes, so the sliders line up
        width = max(c.label.sizeHint().width() for c in self.controls.values())
        for c in self.controls.values():
            c.label.setFixedWidth(width)
        lay.addStretch(1)

    def set_values(self, settings: dict) -> None:
        for name, c in self.controls.items():
            if name in settings:
                c.set_value(settings[name])
