"""The 30-second version of ``scripts/soak_jack.py`` (issue 8, "Long run"; the 10-minute run
is a script, not CI).

The panel runs offscreen with the engine in its own process, on a named dummy JACK server,
the pieces of ``../shared/data/midi/`` are played into its virtual port. Judged by the
script: underflows while playing <= empty callback (scaled) + 1, resident memory growth
<= 5 %, clean exit. The silence-CPU criterion (<= 5 % of playing) is printed; it is
an expected failure until the engine skips its block work when idle (the Python side of
``Engine.render`` costs ~3 % of a core in silence against ~8 % for a quiet piece here).

One whole run (the CI budget); exit status 2 of the
script (the empty callback alone dropped > 2 % of its blocks) skips as inconclusive.
Budget: ~70 s per run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jack_helpers import REPO, jack_missing_reason  # noqa: E402

#: live stress checks (MIDI flood, soak, MTS on JACK): minutes of timing on a real server,
#: flaky on shared CI cores; run with PIANOSYNTH_STRESS_TESTS=1 (and the scripts/ versions)
pytestmark = pytest.mark.skipif(not os.environ.get("PIANOSYNTH_STRESS_TESTS"),
                                reason="live stress test: set PIANOSYNTH_STRESS_TESTS=1")


MIDI_DIR = Path(os.environ.get("SOAK_MIDI_DIR", "")) if os.environ.get("SOAK_MIDI_DIR") \
    else Path(REPO).parent / "shared" / "data" / "midi"
ATTEMPTS = 1


def _gui_usable() -> str | None:
    try:
        from pianosynth.gui import binding_problem
    except ImportError as exc:
        return f"GUI extras missing ({exc})"
    return binding_problem()


def test_soak_30_seconds(tmp_path):
    why = jack_missing_reason()
    if why:
        pytest.skip(f"needs a JACK server: {why}")
    pytest.importorskip("rtmidi")
    if not any(MIDI_DIR.glob("*.mid")):
        pytest.skip(f"no pieces in {MIDI_DIR}")
    mode = []
    problem = _gui_usable()
    if problem and not os.environ.get("SOAK_QT_PATH"):
        mode = ["--play"]                           # still soak the player itself
        print(f"panel not usable here ({problem}): soaking `play --virtual`")
    runs = []
    for attempt in range(1, ATTEMPTS + 1):
        out = tmp_path / f"soak{attempt}.json"
        r = subprocess.run([sys.executable, str(Path(REPO) / "scripts" / "soak_jack.py"),
                            "--minutes", "0.5", "--baseline-s", "8", "--warmup-s", "3",
                            "--settle-s", "4", "--silence-s", "4", "--midi-dir", str(MIDI_DIR),
                            "--json", str(out), *mode],
                           capture_output=True, text=True, timeout=400)
        print(r.stdout[-4000:])
        if not out.exists():
            pytest.fail(f"soak_jack.py did not finish (status {r.returncode}):\n"
                        f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}", pytrace=False)
        fig = json.loads(out.read_text())
        v = fig["verdicts"]
        runs.append(fig)
        if v["underflows"] is not False and v["rss"] and v["clean_exit"]:
            break
    v = runs[-1]["verdicts"]
    assert v["clean_exit"], runs[-1]
    assert v["rss"], runs[-1]
    if v["underflows"] is None:
        pytest.skip("inconclusive: the empty callback alone dropped "
                    f"{100 * runs[-1]['baseline_rate']:.1f} % of its blocks")
    assert v["underflows"], runs[-1]
    if not v["silence_cpu"]:
        pytest.xfail(f"silence costs {100 * runs[-1]['cpu_silence_ratio']:.0f} % of playing "
                     "(engine above an empty callback); needs an idle short-cut in "
                     "Engine.render")
