"""An 88-key on-screen keyboard (A0..C8) played with the mouse.

The velocity comes from where the key is pressed: near the back (top of the key on screen)
is soft, near the front edge is loud, as on a real key where the lever arm is longest at the
front. Dragging across the keys plays a glissando. Keys held by MIDI or the mouse light up;
the key selected for analysis carries a marker.
"""
from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

KEY_LO, KEY_HI = 21, 108
_BLACK = {1, 3, 6, 8, 10}
#: velocity at the back and at the front edge of a key.
VEL_SOFT, VEL_LOUD = 16, 127


def is_black(key: int) -> bool:
    return key % 12 in _BLACK


def velocity_from_y(frac: float) -> int:
    """Velocity for a press at ``frac`` (0 = back of the key, 1 = front edge)."""
    f = min(max(float(frac), 0.0), 1.0)
    return int(round(VEL_SOFT + (VEL_LOUD - VEL_SOFT) * f))


class PianoKeyboard(QWidget):
    """Signals: ``noteOn(key, velocity)``, ``noteOff(key)``, ``keySelected(key)``."""

    noteOn = Signal(int, int)
    noteOff = Signal(int)
    keySelected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.whites = [k for k in range(KEY_LO, KEY_HI + 1) if not is_black(k)]
        self.lit = set()              # keys shown as down (MIDI / audio side)
        self.mouse_key = None         # key held by the mouse
        self.selected = 60
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFixedHeight(86)
        self.setMouseTracking(False)
        self.setToolTip("Click to play: near the front edge is loud, near the back soft. "
                        "Drag for a glissando. Right-click selects a key for analysis "
                        "without playing it.")

    # ------------------------------------------------------------------ geometry
    def _white_w(self) -> float:
        return self.width() / len(self.whites)

    def key_rect(self, key: int) -> QRectF:
        ww = self._white_w()
        h = self.height() - 1
        if not is_black(key):
            i = self.whites.index(key)
            return QRectF(i * ww, 0, ww, h)
        i = self.whites.index(key - 1)
        bw = 0.62 * ww
        return QRectF((i + 1) * ww - bw / 2, 0, bw, 0.62 * h)

    def key_at(self, x: float, y: float):
        for k in range(KEY_LO, KEY_HI + 1):
            if is_black(k) and self.key_rect(k).contains(x, y):
                return k
        ww = self._white_w()
        i = int(x // ww)
        if 0 <= i < len(self.whites) and 0 <= y <= self.height():
            return self.whites[i]
        return None

    def velocity_at(self, key: int, y: float) -> int:
        r = self.key_rect(key)
        return velocity_from_y((y - r.top()) / max(r.height(), 1.0))

    # ------------------------------------------------------------------ mouse
    def mousePressEvent(self, ev):  # noqa: N802
        pos = ev.position()
        key = self.key_at(pos.x(), pos.y())
        if key is None:
            return
        self.selected = key
        self.keySelected.emit(key)
        if ev.button() == Qt.LeftButton:
            self._press(key, self.velocity_at(key, pos.y()))
        self.update()

    def mouseMoveEvent(self, ev):  # noqa: N802
        if self.mouse_key is None:
            return
        pos = ev.position()
        key = self.key_at(pos.x(), pos.y())
        if key is not None and key != self.mouse_key:
            self._release()
            self._press(key, self.velocity_at(key, pos.y()))

    def mouseReleaseEvent(self, ev):  # noqa: N802
        self._release()

    def _press(self, key, vel):
        self.mouse_key = key
        self.noteOn.emit(key, vel)
        self.update()

    def _release(self):
        if self.mouse_key is not None:
            self.noteOff.emit(self.mouse_key)
            self.mouse_key = None
            self.update()

    def set_lit(self, keys) -> None:
        keys = set(keys)
        if keys != self.lit:
            self.lit = keys
            self.update()

    def set_selected(self, key: int) -> None:
        self.selected = int(key)
        self.update()

    # ------------------------------------------------------------------ painting
    def paintEvent(self, ev):  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, False)
        down = set(self.lit)
        if self.mouse_key is not None:
            down.add(self.mouse_key)
        lit_white = QColor(120, 170, 235)
        lit_black = QColor(60, 110, 190)
        font = QFont(self.font())
        font.setPointSizeF(max(6.5, min(8.0, self._white_w() * 0.32)))
        p.setFont(font)
        p.setPen(QPen(QColor(60, 60, 60)))
        for k in self.whites:
            r = self.key_rect(k)
            p.fillRect(r, lit_white if k in down else QColor(250, 250, 246))
            p.drawRect(r)
            if k % 12 == 0:
                p.setPen(QColor(110, 110, 110))
                p.drawText(r.adjusted(0, 0, 0, -3), Qt.AlignHCenter | Qt.AlignBottom,
                           f"C{k // 12 - 1}")
                p.setPen(QPen(QColor(60, 60, 60)))
        for k in range(KEY_LO, KEY_HI + 1):
            if is_black(k):
                r = self.key_rect(k)
                p.fillRect(r, lit_black if k in down else QColor(25, 25, 25))
        # selected key marker
        r = self.key_rect(self.selected)
        d = min(r.width() * 0.5, 8.0)
        cy = r.bottom() - (22 if not is_black(self.selected) else 8)
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setBrush(QColor(240, 150, 30))
        p.setPen(Qt.NoPen)
        p.drawEllipse(QRectF(r.center().x() - d / 2, cy - d / 2, d, d))
        p.end()
