"""Screenshot of the control panel for the docs: ``python scripts/screenshot_panel.py [OUT.png]``.

Builds the panel at 1280x800 with Qt's offscreen platform, runs the engine on the silent
clock (no sound card needed), plays a C major chord with the sustain pedal down, selects
C4 for the key analysis, waits for the plots to update and saves ``docs/panel.png``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from pianosynth.gui.panel import ControlPanel, apply_style, full_settings  # noqa: E402
from pianosynth.gui.session import LiveSession  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHORD = (48, 55, 60, 64, 67, 72)


def wait(app, seconds, until=None):
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.01)
    return until() if until is not None else True


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else ROOT / "docs" / "panel.png"
    app = QApplication.instance() or QApplication(["pianosynth"])
    apply_style(app)
    session = LiveSession(full_settings({}), {}, log=lambda text: None)
    session.open_audio(mode="silent")
    session.open_midi("")
    panel = ControlPanel(session, dialogs=False)
    panel.resize(1280, 800)
    panel.show()
    wait(app, 0.3)
    panel.sustain_btn.setChecked(True)
    for i, k in enumerate(CHORD):
        session.note_on(k, 70 + 8 * i)
        wait(app, 0.03)
    wait(app, 0.35)
    for k in CHORD[:-2]:                 # keep two keys down so the keyboard shows them lit
        session.note_off(k)
    wait(app, 20.0, until=lambda: panel.analysis is not None)
    wait(app, 0.4)
    panel.show_message("Silent clock (screenshot): C major chord, sustain down; "
                       "selected key C4")
    img = panel.grab().toImage()
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = img.save(str(out), "PNG", 0)    # quality 0: strongest zlib compression
    session.close()
    print(f"{out}: {img.width()}x{img.height()}, {out.stat().st_size // 1024} KiB"
          if ok else f"could not write {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
