"""MIDI fuzz: bad, odd and extreme files end in events or one clean error, in bounded time.

Parse level (cheap): >= 10 000 generated and mutated files through
:func:`~pianosynth.io.midi_file.read_midi_file`: every one returns events or raises
:class:`~pianosynth.errors.PianosynthError` with one line, within :data:`PARSE_BOUND_S`.
Render level (expensive): 30 of them through ``pianosynth render`` (44.1 kHz, events cut at
2 s, 1 s tail): exit 0 with a finite file, or exit 2 with one ``pianosynth: error:`` line and
no file. The generators, and a run of every case through both levels with a report, are in
``scripts/fuzz_midi.py``.
"""
import importlib.util
import struct
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pianosynth.errors import PianosynthError
from pianosynth.io import render as render_mod
from pianosynth.io.midi_file import MAX_FILE_BYTES, read_midi_file
from pianosynth.io.render import render_midi

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_midi", ROOT / "scripts" / "fuzz_midi.py")
F = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_midi"] = F
_spec.loader.exec_module(F)

#: time bound of one parse (typical: 0.4 ms; a 40 kB file of 10 000 notes: 0.2 s).
PARSE_BOUND_S = 10.0
#: time bound of one render of <= 3 s of audio (typical 0.3 s).
RENDER_BOUND_S = 60.0
#: generated files per hypothesis example (one drawn shape, several contents: amortises
#: hypothesis' own ~2 ms per example), examples of each test; 9 600 + 300 + 200 cases.
BATCH = 8
N_GENERATED, N_REAL_MUTATED, N_REAL_TRUNCATED = 1_200, 300, 200

OUTCOMES = Counter()
FUZZ = settings(deadline=None, database=None, derandomize=False, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def case_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "case.mid"


def check_parse(path: Path, data: bytes, label: str) -> str:
    path.write_bytes(data)
    outcome, detail, dt = F.parse_case(path, timeout_s=PARSE_BOUND_S)
    OUTCOMES[outcome] += 1
    assert outcome != "fail", f"{label}: {detail}\nfirst bytes: {data[:96].hex()}"
    assert dt < PARSE_BOUND_S, f"{label}: {dt:.1f} s"
    return outcome


# ----------------------------------------------------------------------- parse level
@settings(FUZZ, max_examples=N_GENERATED)
@given(shape=st.randoms(use_true_random=False), kind=st.sampled_from(
    ["structured"] * 8 + ["huge_delta", "tempo"]), seed=st.integers(0, 2**32 - 1),
    n_mutations=st.sampled_from([0, 0, 0, 1, 2, 8]))
def test_generated_files_parse_or_fail_cleanly(case_path, shape, kind, seed, n_mutations):
    """Structured files whose shape hypothesis draws (and shrinks): format, tracks, division,
    chunk lengths, running status, stuck notes, huge deltas, SysEx, metas of every kind,
    odd status bytes, garbage; :data:`BATCH` contents per shape, optionally mutated."""
    import random
    p = F.random_shape(shape, kind)
    for sub in range(seed, seed + BATCH):
        rng = random.Random(sub)
        data = F.tempo_file(rng) if kind == "tempo" else F.structured_file(rng, p)
        if n_mutations:
            data = F.mutate(rng, data, n_mutations)
        check_parse(case_path, data, f"{kind} shape {p}, seed {sub}, {n_mutations} mutations")


@pytest.fixture(scope="module")
def real_files():
    files = F.seed_files()
    if len(files) < 2:
        pytest.skip("../shared/data/midi is not available")
    return files


@settings(FUZZ, max_examples=N_REAL_MUTATED)
@given(index=st.integers(0, 3), seed=st.integers(0, 2**32 - 1),
       n_ops=st.sampled_from([1, 1, 2, 4, 8, 16, 64]))
def test_mutated_real_files_parse_or_fail_cleanly(case_path, real_files, index, seed, n_ops):
    """Byte flips, special bytes, insertions, deletions, duplications and chunk-length edits
    of the real pieces (the demo file and ../shared/data/midi)."""
    import random
    data = F.mutate(random.Random(seed), real_files[index % len(real_files)], n_ops)
    check_parse(case_path, data, f"real file {index} mutated, seed {seed}, {n_ops} ops")


@settings(FUZZ, max_examples=N_REAL_TRUNCATED)
@given(index=st.integers(0, 3), fraction=st.floats(0.0, 1.0))
def test_truncated_real_files_are_clean_errors(case_path, real_files, index, fraction):
    data = real_files[index % len(real_files)]
    cut = int(fraction * len(data))
    outcome = check_parse(case_path, data[:cut], f"real file {index} cut at {cut}")
    assert outcome == "error" or cut == len(data)


def test_fuzz_case_count():
    """The three tests above ran >= 10 000 cases (when run together)."""
    n = sum(OUTCOMES.values())
    if n == 0:
        pytest.skip("run with the fuzz tests above")
    assert n >= 10_000, OUTCOMES
    assert OUTCOMES["ok"] > 500 and OUTCOMES["error"] > 5000, OUTCOMES


# ------------------------------------------------------- regressions and extreme cases
def _file(track: bytes, division: int = 96) -> bytes:
    return F.header(0, 1, division) + F.chunk(b"MTrk", track)


NOTE = b"\x00\x90\x3c\x40" + b"\x60\x80\x3c\x00"
EOT = b"\x00\xff\x2f\x00"


@pytest.mark.parametrize("sf_mi", [(9, 0), (0xF9, 2), (0, 255), (1, 5)])
def test_invalid_key_signature_is_a_clean_error(tmp_path, sf_mi):
    # was a traceback: mido's KeySignatureError is neither a ValueError nor a KeyError
    p = tmp_path / "ks.mid"
    p.write_bytes(_file(b"\x00\xff\x59\x02" + bytes(sf_mi) + NOTE + EOT))
    with pytest.raises(PianosynthError, match="key signature"):
        read_midi_file(p)


def test_valid_key_signature_still_loads(tmp_path):
    p = tmp_path / "ks.mid"
    p.write_bytes(_file(b"\x00\xff\x59\x02\xfd\x01" + NOTE + EOT))      # 3 flats, minor
    assert len(read_midi_file(p)) == 2


def test_file_over_the_size_limit_is_refused_at_once(tmp_path):
    # mido needs ~6 s and ~260 MB per MB of dense file: the limit bounds parse time
    p = tmp_path / "big.mid"
    with open(p, "wb") as f:
        f.write(_file(NOTE + EOT))
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(PianosynthError, match="too large"):
        read_midi_file(p)
    assert MAX_FILE_BYTES <= 8 * 2**20


def test_ten_thousand_simultaneous_notes(tmp_path):
    import random
    p = tmp_path / "many.mid"
    p.write_bytes(F.many_notes_file(random.Random(0)))
    ev = read_midi_file(p)
    assert int((ev["status"] & 0xF0 == 0x90).sum()) == 10_000
    assert np.all(ev["time_s"] == 0.0)


def test_stuck_notes_end_at_the_auto_tail_limit(monkeypatch):
    """Notes never released under the sustain pedal: ``tail="auto"`` stops at the limit
    (patched to 0.5 s here; 30 s in use) instead of waiting for silence."""
    from conftest import get_engine
    from pianosynth.io.midi_file import MIDI_EVENT_DTYPE
    monkeypatch.setattr(render_mod, "AUTO_TAIL_MAX_S", 0.5)
    sr = 44100
    rows = [(0.0, 0xB0, 64, 127)] + [(0.01 * i, 0x90, k, 100)
                                     for i, k in enumerate(range(21, 109))]
    ev = np.array(rows, MIDI_EVENT_DTYPE)
    y = render_midi(ev, get_engine(sr), sr, tail="auto")
    assert y.shape[0] == round(0.87 * sr) + round(0.5 * sr)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0


# ---------------------------------------------------------------------- render level
#: (kind, seed) of the 30 rendered cases: 20 that parse (incl. 10 000 simultaneous notes,
#: stuck notes, absurd tempos, huge deltas, mutated real pieces) and 10 that do not.
RENDER_SAMPLE = [("structured", s) for s in (1, 2, 3, 4, 5, 14, 22, 26, 32, 45, 55, 64)] + \
    [("tempo", s) for s in (1, 2, 4, 5)] + [("huge_delta", s) for s in (1, 2, 3, 4)] + \
    [("many_notes", 1), ("many_notes", 2)] + [("mutated", s) for s in (1, 2, 14, 24, 26)] + \
    [("truncated", s) for s in (1, 2, 3)]
RENDERED = Counter()


@pytest.mark.parametrize("kind, seed", RENDER_SAMPLE, ids=[f"{k}-{s}" for k, s in RENDER_SAMPLE])
def test_render_sample_ends_in_a_file_or_one_error_line(tmp_path, kind, seed):
    src = tmp_path / "case.mid"
    src.write_bytes(F.make_case(kind, seed))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    outcome, detail, dt = F.render_case(src, out_dir, tail="1", cap_s=2.0,
                                        timeout_s=RENDER_BOUND_S)
    RENDERED[outcome] += 1
    assert outcome in ("ok", "error"), detail
    assert dt < RENDER_BOUND_S
    if outcome == "ok":
        assert sorted(p.name for p in out_dir.iterdir()) == ["out.wav"]


def test_render_sample_rendered_most_cases():
    if sum(RENDERED.values()) < len(RENDER_SAMPLE):
        pytest.skip("run with the render sample above")
    assert RENDERED["ok"] >= 15, RENDERED


def test_generators_are_deterministic():
    for kind in F.KINDS:
        assert F.make_case(kind, 7) == F.make_case(kind, 7)
    assert struct.unpack(">4sL", F.make_case("structured", 5)[:8])[0] == b"MThd"
