"""Tuning of the 88 keys: historical temperaments, inharmonic octave stretch, Scala files.

Everything here computes the target frequency of partial 1 of each key (``f1``, Hz) and turns
it into the per-key ``f0_hz`` override the engine accepts. With the stiff-string law of
Bank et al. 2003, eq. 12 (Fletcher 1964), f_k = k f0 sqrt(1 + B k^2), partial 1 lands on the
target when f0 = f1 / sqrt(1 + B) with the B the engine designs that key with.

Pieces
------
- :func:`temperament_cents`: offsets from 12-TET of the 12 pitch classes for the
  temperaments in :data:`TEMPERAMENTS`, derived from their circles of fifths.
- :func:`railsback_stretch_cents`: the octave stretch that inharmonicity forces on an aural
  tuner (each octave tuned so that partial 2 of the lower note meets partial 1 of the upper),
  accumulated from A4 outward; or ``stretch="table"`` for the measured curve of
  :func:`pianosynth.design.keyboard.stretch_cents`.
- :func:`read_scl`, :func:`read_kbm`, :func:`scala_key_frequencies`: Scala scale and
  keyboard-mapping files (Op de Coul's format, see the references).
- :func:`tuning_f1_hz`, :func:`tuning_key_overrides`: one tuning for the whole keyboard, as
  targets or as ``{midi_key: {"f0_hz": ...}}`` for ``Engine(key_overrides=...)``.
- :class:`TuningSpec`, :func:`tuning_spec_from_table`: a whole tuning request (a preset's
  ``[tuning]`` table or the command line's ``--tuning/--tuning-root/--kbm``) validated once
  and turned into overrides by one code path, so both give the same keyboard.

References
----------
.. [1] B. Bank et al., "Physically informed signal processing methods for piano sound
   synthesis: a research overview", EURASIP J. Applied Signal Processing 2003(10), eq. 12.
.. [2] H. Fletcher, "Normal vibration frequencies of a stiff piano string", JASA 36, 1964.
.. [3] J. M. Barbour, "Tuning and Temperament: A Historical Survey", Michigan State College
   Press 1951 (the temperament tables; the cents below agree with his to 0.001 cent).
.. [4] O. L. Railsback, "Scale temperament as applied to piano tuning", JASA 9, 1938, p. 274;
   R. W. Young, "Inharmonicity of plain wire piano strings", JASA 24, 1952 (stretch from B).
.. [5] M. Op de Coul, "Scala scale file format",
   https://www.huygens-fokker.org/scala/scl_format.html, and "Keyboard mappings" in the Scala
   help, https://www.huygens-fokker.org/scala/help.htm#mappings.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.params import KEY_OVERRIDES
from ..errors import PianosynthError
from .keyboard import KEY_MAX, KEY_MIN, KEYS, design_keyboard, equal_tempered_hz, stretch_cents

__all__ = [
    "TuningError", "TEMPERAMENTS", "STRETCH_KINDS", "PITCH_CLASS_NAMES", "temperament_cents",
    "railsback_stretch_cents", "read_scl", "parse_scl", "read_kbm", "parse_kbm",
    "KeyboardMapping", "scala_key_frequencies", "tuning_f1_hz", "tuning_key_overrides",
    "merge_key_overrides", "canonical_temperament", "parse_root", "TuningSpec", "TUNING_FIELDS", "tuning_spec_from_table",
]


class TuningError(PianosynthError):
    """A tuning file or request that cannot be used; names the file and line where known.

    Attributes
    ----------
    path : str or None
        The file (``None`` for text parsed from a string without a name).
    line : int or None
        1-based line number in that file.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None and line is not None:
            where = f"{path}, line {line}: "
        elif path is not None:
            where = f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


# --------------------------------------------------------------------------- temperaments
PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")

#: Pythagorean comma (3/2)^12 / 2^7 and syntonic comma 81/80, cents.
PYTHAGOREAN_COMMA = 1200.0 * math.log2(3.0 ** 12 / 2.0 ** 19)     # 23.460 cents
SYNTONIC_COMMA = 1200.0 * math.log2(81.0 / 80.0)                   # 21.506 cents
SCHISMA = PYTHAGOREAN_COMMA - SYNTONIC_COMMA                        # 1.954 cents
PURE_FIFTH = 1200.0 * math.log2(1.5)                                # 701.955 cents

# Each closed temperament is its circle of fifths C-G-D-A-E-B-F#-C#-G#-Eb-Bb-F-C: the amount
# (cents) by which each of the 12 fifths is narrower than pure 3/2. The 12 amounts sum to one
# Pythagorean comma, so the circle closes on 7 octaves.
_PC, _SC = PYTHAGOREAN_COMMA, SYNTONIC_COMMA
_FIFTH_TEMPERING = {
    # Werckmeister, "Musicalische Temperatur" (1691), his third ("correct") temperament:
    # C-G, G-D, D-A and B-F# narrowed by 1/4 Pythagorean comma, the other eight pure.
    "werckmeister3": (_PC / 4, _PC / 4, _PC / 4, 0, 0, _PC / 4, 0, 0, 0, 0, 0, 0),
    # Vallotti (c. 1730, described in "Della scienza teorica e pratica della moderna musica",
    # 1779): the six fifths F-C-G-D-A-E-B narrowed by 1/6 Pythagorean comma, B-F# ... Bb-F pure.
    "vallotti": (_PC / 6, _PC / 6, _PC / 6, _PC / 6, _PC / 6, 0, 0, 0, 0, 0, 0, _PC / 6),
    # Kirnberger III (letter to Forkel, 1779): C-G-D-A-E narrowed by 1/4 syntonic comma (pure
    # major third C-E), F#-C# narrowed by the schisma, the other seven pure.
    "kirnberger3": (_SC / 4, _SC / 4, _SC / 4, _SC / 4, 0, 0, SCHISMA, 0, 0, 0, 0, 0),
    # Quarter-comma meantone (Aron 1523, Zarlino 1571): eleven fifths Eb-Bb-F-C-...-C#-G#
    # narrowed by 1/4 syntonic comma (696.578 cents, pure major thirds), the wolf G#-Eb
    # takes the rest (737.637 cents).
    "quarter_comma_meantone": tuple([_SC / 4] * 8 + [_PC - 11 * _SC / 4] + [_SC / 4] * 3),
}

#: 5-limit just intonation on C (Ptolemy's intense diatonic, chromatic notes by 5-limit
#: ratios; the "asymmetric" 12-note 5-limit scale): C 1/1, C# 16/15, D 9/8, Eb 6/5, E 5/4,
#: F 4/3, F# 45/32, G 3/2, G# 8/5, A 5/3, Bb 9/5, B 15/8.
_JUST_RATIOS = ((1, 1), (16, 15), (9, 8), (6, 5), (5, 4), (4, 3), (45, 32), (3, 2), (8, 5),
                (5, 3), (9, 5), (15, 8))

#: names accepted by :func:`temperament_cents` (and ``kind`` of :func:`tuning_key_overrides`).
TEMPERAMENTS = ("equal", "werckmeister3", "vallotti", "kirnberger3", "quarter_comma_meantone",
                "just")

_ALIASES = {
    "12tet": "equal", "et": "equal", "equal_temperament": "equal",
    "werckmeister_iii": "werckmeister3", "werckmeister": "werckmeister3",
    "kirnberger_iii": "kirnberger3", "kirnberger": "kirnberger3",
    "meantone": "quarter_comma_meantone", "quarter_comma": "quarter_comma_meantone",
    "just_intonation": "just", "just5": "just",
}


def canonical_temperament(name: str) -> str:
    """The name of :data:`TEMPERAMENTS` that ``name`` (any case, an alias such as
    "werckmeister_iii" or "meantone") means; raises :class:`TuningError` if none."""
    return _canonical_temperament(name)


def _canonical_temperament(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in TEMPERAMENTS:
        raise TuningError(f"unknown temperament {name!r}; known: {', '.join(TEMPERAMENTS)}")
    return key


def _circle_cents(tempering) -> np.ndarray:
    """Cents above C (0..1200) of the 12 pitch classes from a tempered circle of fifths."""
    cents = np.zeros(12)
    pos, pc = 0.0, 0
    for t in tempering[:11]:
        pos += PURE_FIFTH - t
        pc = (pc + 7) % 12
        cents[pc] = pos % 1200.0
    return cents


def temperament_cents(name: str, root_key: int = 60) -> np.ndarray:
    """Offsets of the 12 pitch classes from 12-TET, cents, for a named temperament.

    Parameters
    ----------
    name : str
        One of :data:`TEMPERAMENTS` ("equal", "werckmeister3", "vallotti", "kirnberger3",
        "quarter_comma_meantone", "just"); a few aliases ("meantone", "werckmeister_iii") too.
    root_key : int
        MIDI key (or pitch class 0..11) on which the temperament is built: its "C". Default
        60 (C). Only ``root_key % 12`` matters.

    Returns
    -------
    ndarray, float64, shape (12,)
        Offset in cents from 12-TET of pitch class p (0 = C, 1 = C#, ... 11 = B), with the root
        at 0. To keep A4 at the reference pitch subtract the offset of A (index 9), as
        :func:`tuning_f1_hz` does.

    Raises
    ------
    TuningError
        On an unknown name.

    Notes
    -----
    The closed temperaments are built from their circle of fifths (each fifth = 701.955 cents
    minus its share of the Pythagorean comma, 23.460 cents, or of the syntonic comma, 21.506
    cents); see the table in the module source. With root C the results are (cents from C,
    Barbour 1951):

    - Werckmeister III: 0, 90.225, 192.180, 294.135, 390.225, 498.045, 588.270, 696.090,
      792.180, 888.270, 996.090, 1092.180
    - Vallotti: 0, 94.135, 196.090, 298.045, 392.180, 501.955, 592.180, 698.045, 796.090,
      894.135, 1000.000, 1090.225
    - Kirnberger III: 0, 90.225, 193.157, 294.135, 386.314, 498.045, 590.224, 696.578,
      792.180, 889.735, 996.090, 1088.269
    - quarter-comma meantone (Eb..G#): 0, 76.049, 193.157, 310.265, 386.314, 503.422,
      579.471, 696.578, 772.627, 889.735, 1006.843, 1082.892
    - just (5-limit): 0, 111.731, 203.910, 315.641, 386.314, 498.045, 590.224, 701.955,
      813.686, 884.359, 1017.596, 1088.269

    Examples
    --------
    >>> np.round(temperament_cents("werckmeister3")[:3], 3)
    array([ 0.   , -9.775, -7.82 ])
    """
    key = _canonical_temperament(name)
    if key == "equal":
        above_root = np.arange(12) * 100.0
    elif key == "just":
        above_root = np.array([1200.0 * math.log2(a / b) for a, b in _JUST_RATIOS])
    else:
        above_root = _circle_cents(_FIFTH_TEMPERING[key])
    offsets = above_root - np.arange(12) * 100.0
    r = int(root_key) % 12
    return offsets[(np.arange(12) - r) % 12]


# --------------------------------------------------------------------------- stretch
#: ``stretch`` values of :func:`tuning_f1_hz` besides an array of 88 cents.
STRETCH_KINDS = ("none", "railsback", "table")


def _octave_excess_cents(b_low, b_high, partials):
    """How much wider than 2:1 (cents, partial 1 to partial 1) an octave is when partial m of
    the lower note is tuned to partial n of the upper one (m = 2 n), eq. 12."""
    m, n = partials
    return 600.0 * (np.log2((1.0 + b_low * m * m) / (1.0 + b_low))
                    + np.log2((1.0 + b_high) / (1.0 + b_high * n * n)))


def railsback_stretch_cents(inharmonicity_b, f0_hz=None, *, reference_key: int = 69,
                            partials=(2, 1), bass_partials=None,
                            bass_below_hz: float = 0.0) -> np.ndarray:
    """Octave stretch of partial 1 forced by inharmonicity, cents vs 12-TET, for all 88 keys.

    Parameters
    ----------
    inharmonicity_b : array_like, float, shape (88,)
        B of eq. 12 for keys 21..108 (dimensionless, 0 .. 0.05); use the engine's own B
        (``design_keyboard(settings).inharmonicity_b``) so the targets are reachable.
    f0_hz : array_like, float, shape (88,), optional
        f0 of each key (Hz). Only needed with ``bass_partials``: octaves whose lower note has
        f0 below ``bass_below_hz`` are matched on ``bass_partials`` instead.
    reference_key : int
        Top of the temperament octave, kept at 0 cents (default 69 = A4).
    partials : (int, int)
        (m, n) with m = 2 n: partial m of the lower note is tuned to partial n of the upper.
        Default (2, 1), the plain octave a tuner hears as beat-free.
    bass_partials : (int, int), optional
        The pair used in the bass, e.g. (4, 2) or (6, 3), as tuners do where the low partials
        of the bass strings are weak.
    bass_below_hz : float
        f0 (Hz) of the lower note below which ``bass_partials`` applies.

    Returns
    -------
    ndarray, float64, shape (88,)
        Stretch s of partial 1 of each key in cents: f1 = f_12TET 2^(s / 1200).

    Raises
    ------
    TuningError
        On a wrong shape, a negative B, or partials that do not form an octave.

    Notes
    -----
    The keys ``reference_key - 11 .. reference_key`` (A#3..A4) form the temperament octave:
    stretch 0, their pitches come from the temperament alone. Every other key is tuned as a
    beat-free octave against its neighbour one octave closer to that range, outward from A4:
    with f_k = k f0 sqrt(1 + B k^2) (eq. 12) and m = 2 n, m f0_l sqrt(1 + B_l m^2) =
    n f0_u sqrt(1 + B_u n^2) gives the partial-1 octave

        1200 log2(f1_u / f1_l) = 1200 + 600 log2[(1 + B_l m^2) / (1 + B_l)]
                                       + 600 log2[(1 + B_u) / (1 + B_u n^2)],

    so s(k + 12) = s(k) + excess(k) going up and s(k - 12) = s(k) - excess(k - 12) going down.
    Then every octave on the keyboard is beat-free on the chosen partials, and the stretch
    grows with B toward both ends (Railsback's curve; Young 1952 derived it from B). For
    (2, 1) the excess is about 2600 B_l cents: ~2 cents per octave near A4 and ~15 cents in the
    top octave with this keyboard's B. A tuner usually also widens the temperament octave a
    little; that is left to the temperament.

    Examples
    --------
    >>> s = railsback_stretch_cents(np.full(88, 1e-3))
    >>> round(float(s[81 - 21]), 2)    # A5: its partial 1 meets partial 2 of A4
    2.59
    """
    b = np.asarray(inharmonicity_b, dtype=float)
    n_keys = KEY_MAX - KEY_MIN + 1
    if b.shape != (n_keys,):
        raise TuningError(f"inharmonicity_b must have shape ({n_keys},), got {b.shape}")
    if not np.all(np.isfinite(b)) or np.any(b < 0):
        raise TuningError("inharmonicity_b must be finite and >= 0")
    pairs = [tuple(int(v) for v in partials)]
    if bass_partials is not None:
        pairs.append(tuple(int(v) for v in bass_partials))
        if f0_hz is None:
            raise TuningError("bass_partials needs f0_hz to know where the bass is")
    for m, n in pairs:
        if n < 1 or m != 2 * n:
            raise TuningError(f"partials {m}:{n} do not form an octave (need m = 2 n)")
    f0 = None if f0_hz is None else np.asarray(f0_hz, dtype=float)
    if f0 is not None and f0.shape != (n_keys,):
        raise TuningError(f"f0_hz must have shape ({n_keys},), got {f0.shape}")

    def excess(i_low):
        pair = pairs[0]
        if bass_partials is not None and f0[i_low] < bass_below_hz:
            pair = pairs[1]
        return float(_octave_excess_cents(b[i_low], b[i_low + 12], pair))

    ref = int(reference_key) - KEY_MIN
    if not 11 <= ref < n_keys:
        raise TuningError(f"reference_key {reference_key} must be in {KEY_MIN + 11}..{KEY_MAX}")
    s = np.zeros(n_keys)
    for i in range(ref + 1, n_keys):
        s[i] = s[i - 12] + excess(i - 12)
    for i in range(ref - 12, -1, -1):
        s[i] = s[i + 12] - excess(i)
    return s


# --------------------------------------------------------------------------- Scala files
def _read_text(path) -> tuple[str, str]:
    p = os.fspath(path)
    try:
        data = Path(p).read_bytes()
    except OSError as e:
        raise TuningError(f"cannot read the file: {e.strerror or e}", p) from None
    # "human readable ASCII or 8-bit character text files": Latin-1 decodes any byte
    return data.decode("latin-1"), p


def _lines(text: str) -> list[str]:
    # LF, CR LF or CR line ends; str.splitlines would also split on form feeds etc.
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


_CENTS_RE = re.compile(r"[ \t]*([+-]?(?:\d+\.\d*|\.\d+))")
_RATIO_RE = re.compile(r"[ \t]*(\d+)(?:[ \t]*/[ \t]*(\d+))?")
_NEG_RATIO_RE = re.compile(r"[ \t]*-[ \t]*\d")
_COUNT_RE = re.compile(r"[ \t]*(\d+)[ \t]*")
#: largest number of notes (scale) or map size (keyboard mapping) accepted
MAX_NOTES = 4096


def _check_value_end(line: str, end: int, where) -> None:
    """Text after a pitch is ignored, but it must be separated from it: ``100,0`` or
    ``3/2x`` would otherwise read as the ratio 100 or 3/2 without a word."""
    if end < len(line) and line[end] not in " \t!":
        raise where(f"unexpected {line[end]!r} right after the pitch in {line.strip()!r} "
                    "(cents need a period, e.g. 100.0; separate any text by a space)")


def _parse_pitch(line: str, where) -> float:
    """One pitch line of a .scl file -> cents. ``where(msg)`` makes the TuningError."""
    m = _CENTS_RE.match(line)
    if m:
        _check_value_end(line, m.end(), where)
        return float(m.group(1))
    if _NEG_RATIO_RE.match(line):
        raise where(f"negative ratio {line.strip()!r}: ratios must be positive")
    m = _RATIO_RE.match(line)
    if m:
        _check_value_end(line, m.end(), where)
    else:
        shown = line.strip()
        raise where("expected a pitch: cents with a period (e.g. 100.0) or a ratio "
                    f"(e.g. 3/2 or 2), got {shown!r}" if shown else
                    "expected a pitch: cents with a period (e.g. 100.0) or a ratio "
                    "(e.g. 3/2 or 2), got an empty line")
    num = int(m.group(1))
    den = int(m.group(2)) if m.group(2) is not None else 1
    if den == 0:
        raise where(f"ratio {num}/{den} has a zero denominator")
    if num == 0:
        raise where(f"ratio {num}/{den} is zero: ratios must be positive")
    return 1200.0 * (math.log2(num) - math.log2(den))


def parse_scl(text: str, name: str = "<scale>") -> tuple[str, list[float]]:
    """Parse the text of a Scala scale (.scl) file; see :func:`read_scl`."""
    def error(line_no):
        return lambda msg: TuningError(msg, name, line_no)

    description = None
    count = None
    count_line = 0
    pitches: list[float] = []
    lines = _lines(text)
    for no, line in enumerate(lines, start=1):
        if line.startswith("!"):
            continue                      # comment
        if description is None:
            description = line.strip()    # may be empty
        elif count is None:
            m = _COUNT_RE.fullmatch(line)
            if not m:
                raise TuningError("expected the number of notes (a whole number >= 0), got "
                                  f"{line.strip()!r}", name, no)
            count, count_line = int(m.group(1)), no
            if count > MAX_NOTES:
                raise TuningError(f"{count} notes is more than the {MAX_NOTES} supported",
                                  name, no)
        elif len(pitches) < count:
            pitches.append(_parse_pitch(line, error(no)))
        elif line.strip():
            raise TuningError(f"more pitch lines than the {count} notes given on line "
                              f"{count_line}", name, no)
    if description is None:
        raise TuningError("empty file: expected a description line, the number of notes and "
                          "the pitches", name, len(lines) or None)
    if count is None:
        raise TuningError("file ends before the number of notes", name, len(lines))
    if len(pitches) < count:
        raise TuningError(f"file ends after {len(pitches)} of the {count} pitches given on line "
                          f"{count_line}", name, len(lines))
    return description, pitches


def read_scl(path) -> tuple[str, list[float]]:
    """Read a Scala scale file (.scl).

    Parameters
    ----------
    path : str or os.PathLike
        The file (ASCII or 8-bit text; LF, CR LF or CR line ends).

    Returns
    -------
    description : str
        The description line (may be empty).
    cents : list of float
        The pitches of degrees 1..n in cents above degree 0 (the implicit 1/1, not listed);
        the last one is the period (usually 1200.0, the octave 2/1).

    Raises
    ------
    TuningError
        On a file that does not follow the format, naming the file and the line.

    Notes
    -----
    The format (Op de Coul [5]): lines starting with '!' are comments; the first other line is
    the description (may be empty); the next holds the number of notes n (spaces around it
    allowed, n >= 0); then n pitch lines. A pitch containing a period is in cents (``408.``,
    ``-5.0``), otherwise it is a ratio ``a/b`` or an integer ``a`` (= a/1); spaces and tabs
    before it and anything after it are ignored (``100.0 cents``, ``5/4   E\\``). Zero or
    negative ratios are errors. Two rules stricter than the spec states: text after a pitch
    must be separated from it by a space, tab or '!' (``100,0`` is refused rather than read
    as the ratio 100/1); and after the n pitches only comments and blank lines may follow,
    because a further pitch line almost always means a wrong count (and would silently
    change the period).

    Examples
    --------
    >>> desc, cents = parse_scl("! x.scl\\nfifths\\n 2\\n 3/2\\n 1200.0 octave\\n")
    >>> desc, [round(c, 3) for c in cents]
    ('fifths', [701.955, 1200.0])
    """
    text, p = _read_text(path)
    return parse_scl(text, p)


@dataclass(frozen=True)
class KeyboardMapping:
    """A Scala keyboard mapping (.kbm): which scale degree each MIDI key plays.

    Attributes
    ----------
    size : int
        Size of the map: the pattern repeats every ``size`` keys (0 = linear mapping, key
        ``middle_key + d`` plays degree d).
    first_key, last_key : int
        Range of MIDI keys retuned (0..127); keys outside it are not mapped.
    middle_key : int
        Key on which the first mapping entry (normally degree 0) is mapped.
    reference_key : int
        Key whose frequency is given.
    reference_hz : float
        Frequency of ``reference_key``, Hz.
    octave_degree : int
        Scale degree that is the formal octave: the degree difference between adjacent
        repetitions of the map (0 = the scale's last degree, i.e. its size).
    mapping : tuple of (int or None)
        Degree for keys ``middle_key + i`` (i < size); None for unmapped ('x' in the file, or
        left out at the end).
    path : str or None
        File it came from.
    lines : dict
        Line number of each header field (for error messages).
    """

    size: int = 0
    first_key: int = 0
    last_key: int = 127
    middle_key: int = 60
    reference_key: int = 69
    reference_hz: float = 440.0
    octave_degree: int = 0
    mapping: tuple = ()
    path: str | None = None
    lines: dict = field(default_factory=dict, compare=False, repr=False)

    def degree(self, key: int, n_notes: int) -> int | None:
        """Scale degree (any integer) that MIDI ``key`` plays, None if unmapped.

        ``n_notes`` is the size of the scale (used when ``octave_degree`` is 0)."""
        if not self.first_key <= key <= self.last_key:
            return None
        if self.size == 0:
            return key - self.middle_key
        q, i = divmod(key - self.middle_key, self.size)
        d = self.mapping[i] if i < len(self.mapping) else None
        if d is None:
            return None
        return q * (self.octave_degree or n_notes) + d


_KBM_FIELDS = (
    ("size", "size of map (a whole number >= 0)"),
    ("first_key", "first MIDI note number to retune (0..127)"),
    ("last_key", "last MIDI note number to retune (0..127)"),
    ("middle_key", "middle note where the first mapping entry is mapped (0..127)"),
    ("reference_key", "reference note whose frequency is given (0..127)"),
    ("reference_hz", "reference frequency in Hz (e.g. 440.0)"),
    ("octave_degree", "scale degree of the formal octave (a whole number >= 0)"),
)
_INT_RE = re.compile(r"[ \t]*([+-]?\d+)(?:[ \t].*)?")
_FLOAT_RE = re.compile(r"[ \t]*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:[ \t].*)?")
_X_RE = re.compile(r"[ \t]*[xX](?:[ \t].*)?")


def parse_kbm(text: str, name: str = "<mapping>") -> KeyboardMapping:
    """Parse the text of a Scala keyboard mapping (.kbm) file; see :func:`read_kbm`."""
    values: dict = {}
    lines_of: dict = {}
    mapping: list = []
    mapping_lines: list = []
    lines = _lines(text)
    for no, line in enumerate(lines, start=1):
        if line.startswith("!"):
            continue
        if len(values) < len(_KBM_FIELDS):
            fname, what = _KBM_FIELDS[len(values)]
            if fname == "reference_hz":
                m = _FLOAT_RE.fullmatch(line)
                v = float(m.group(1)) if m else None
                if v is None or not math.isfinite(v) or v <= 0:
                    raise TuningError(f"expected the {what}, a number > 0, got {line.strip()!r}",
                                      name, no)
            else:
                m = _INT_RE.fullmatch(line)
                if not m:
                    raise TuningError(f"expected the {what}, got {line.strip()!r}", name, no)
                v = int(m.group(1))
                hi = MAX_NOTES if fname in ("size", "octave_degree") else 127
                if not 0 <= v <= hi:
                    raise TuningError(f"{v} is out of range for the {what}", name, no)
            values[fname] = v
            lines_of[fname] = no
        elif len(mapping) < values["size"]:
            if _X_RE.fullmatch(line):
                mapping.append(None)
            else:
                m = _INT_RE.fullmatch(line)
                if not m or int(m.group(1)) < 0:
                    raise TuningError("expected a mapping entry: a scale degree >= 0 or 'x' "
                                      f"for an unmapped key, got {line.strip()!r}", name, no)
                mapping.append(int(m.group(1)))
            mapping_lines.append(no)
        elif line.strip():
            raise TuningError(f"more mapping entries than the size of map {values['size']} "
                              f"(line {lines_of['size']})", name, no)
    if len(values) < len(_KBM_FIELDS):
        missing = _KBM_FIELDS[len(values)][1]
        raise TuningError(f"file ends before the {missing}", name, len(lines) or None)
    if values["first_key"] > values["last_key"]:
        raise TuningError(f"last note {values['last_key']} is below the first note "
                          f"{values['first_key']} (line {lines_of['first_key']})",
                          name, lines_of["last_key"])
    # entries left out at the end are unmapped ("At the end, unmapped keys may be left out")
    kbm = KeyboardMapping(mapping=tuple(mapping), path=name, lines=lines_of, **values)
    if kbm.size > 0:
        i = (kbm.reference_key - kbm.middle_key) % kbm.size
        if i >= len(mapping) or mapping[i] is None:
            where = f"entry {i} of the mapping" + (f" (line {mapping_lines[i]})"
                                                   if i < len(mapping_lines) else
                                                   " (left out, so unmapped)")
            raise TuningError(f"the reference note {kbm.reference_key} is unmapped ({where}): "
                              "its frequency cannot define the scale", name,
                              lines_of["reference_key"])
    return kbm


def read_kbm(path) -> KeyboardMapping:
    """Read a Scala keyboard mapping file (.kbm).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    KeyboardMapping

    Raises
    ------
    TuningError
        On a file that does not follow the format, naming the file and the line.

    Notes
    -----
    Lines starting with '!' are comments. The other lines are, in order (Scala help,
    "Keyboard mappings" [5]): size of map; first MIDI note to retune; last MIDI note to
    retune; middle note (where the first entry of the mapping is mapped); reference note;
    reference frequency (Hz, a decimal number); scale degree of the formal octave; then up to
    ``size`` mapping entries, one per line: a scale degree, or 'x' for an unmapped key.
    Entries left out at the end are unmapped; more than ``size`` entries is an error. Text
    after a value (separated by a space or tab) is ignored. Key n (first <= n <= last) plays
    degree q * octave + map[i] with q, i = divmod(n - middle, size); with size 0 it plays
    degree n - middle. The reference note must be mapped.
    """
    text, p = _read_text(path)
    return parse_kbm(text, p)


def _as_scale(scl) -> tuple[list[float], str]:
    if isinstance(scl, (str, os.PathLike)):
        _, cents = read_scl(scl)
        return cents, os.fspath(scl)
    if isinstance(scl, tuple) and len(scl) == 2 and isinstance(scl[0], str):
        return [float(c) for c in scl[1]], "<scale>"
    return [float(c) for c in scl], "<scale>"


def scala_key_frequencies(scl, kbm=None, *, a4_hz: float = 440.0,
                          keys=range(KEY_MIN, KEY_MAX + 1)) -> dict[int, float]:
    """Frequencies of the piano keys under a Scala scale and keyboard mapping.

    Parameters
    ----------
    scl : path, (description, cents) or sequence of cents
        The scale: a .scl file, the result of :func:`read_scl`, or the cents of degrees 1..n.
    kbm : path or KeyboardMapping, optional
        The keyboard mapping. Default: linear, degree 0 on key 60 (C4), key 69 (A4) at
        ``a4_hz`` (a piano is tuned to A; Scala's own default puts the reference on key 60).
    a4_hz : float
        Frequency of key 69 without a mapping file, Hz (ignored when ``kbm`` is given: the
        file's reference frequency rules).
    keys : iterable of int
        MIDI keys to compute (default the piano's 21..108).

    Returns
    -------
    dict[int, float]
        ``{midi_key: f_hz}`` for the mapped keys; unmapped ones ('x', or outside the map's
        first..last note) are left out.

    Raises
    ------
    TuningError
        On a scale with no pitches, or a malformed file.

    Notes
    -----
    With cents c_0 = 0, c_1 .. c_n of the scale and period P = c_n, degree d = q n + j plays
    q P + c_j cents; key k plays f_ref 2^((cents(deg(k)) - cents(deg(ref))) / 1200).
    """
    cents, sname = _as_scale(scl)
    n = len(cents)
    if n == 0:
        raise TuningError("the scale has no pitches besides 1/1, so it has no period", sname)
    if kbm is None:
        kbm = KeyboardMapping(size=0, middle_key=60, reference_key=69, reference_hz=float(a4_hz))
    elif not isinstance(kbm, KeyboardMapping):
        kbm = read_kbm(kbm)
    table = np.concatenate([[0.0], np.asarray(cents, float)])
    period = table[-1]

    def degree_cents(d: int) -> float:
        q, j = divmod(d, n)
        return q * period + table[j]

    d_ref = kbm.degree(kbm.reference_key, n)
    if d_ref is None:   # the reference note lies outside first..last: still defines pitch
        d_ref = KeyboardMapping(size=kbm.size, middle_key=kbm.middle_key,
                                octave_degree=kbm.octave_degree,
                                mapping=kbm.mapping).degree(kbm.reference_key, n)
    c_ref = degree_cents(d_ref)
    out = {}
    for key in keys:
        d = kbm.degree(int(key), n)
        if d is not None:
            out[int(key)] = kbm.reference_hz * 2.0 ** ((degree_cents(d) - c_ref) / 1200.0)
    return out


# --------------------------------------------------------------------------- whole keyboard
def _stretch_array(stretch, b, f0, settings) -> np.ndarray:
    if isinstance(stretch, str):
        kind = stretch.strip().lower()
        if kind == "none":
            return np.zeros(len(KEYS))
        if kind == "railsback":
            return railsback_stretch_cents(b, f0)
        if kind == "table":
            s = settings or {}
            return stretch_cents(KEYS, s.get("stretch_scale", 1.0))
        raise TuningError(f"unknown stretch {stretch!r}; use one of {', '.join(STRETCH_KINDS)} "
                          "or an array of 88 cents")
    arr = np.asarray(stretch, dtype=float)
    if arr.shape != (len(KEYS),) or not np.all(np.isfinite(arr)):
        raise TuningError(f"a stretch array must hold {len(KEYS)} finite cents (keys "
                          f"{KEY_MIN}..{KEY_MAX}), got shape {arr.shape}")
    return arr


def tuning_f1_hz(kind: str = "equal", *, root_key: int = 60, a4_hz: float | None = None,
                 inharmonicity_b=None, stretch=None, scl=None, kbm=None,
                 settings: dict | None = None, key_overrides: dict | None = None,
                 reference_key: int = 69) -> dict[int, float]:
    """Target frequency of partial 1 of each key under a tuning, Hz.

    Parameters
    ----------
    kind : str
        A temperament of :data:`TEMPERAMENTS`, or "scala" (then ``scl`` is required).
    root_key : int
        Root ("C") of the temperament, MIDI key or pitch class (default 60 = C). For "scala"
        without ``kbm``: the key that plays degree 0.
    a4_hz : float, optional
        Frequency of ``reference_key`` before stretch, Hz; default ``settings["a4_hz"]``
        (440). Ignored for a Scala tuning with a ``kbm`` (its reference frequency rules).
    inharmonicity_b : array_like, shape (88,), optional
        B per key for the Railsback stretch; default the engine's own curve,
        ``design_keyboard(settings, key_overrides).inharmonicity_b``.
    stretch : {"none", "railsback", "table"} or array_like (88,), optional
        Stretch of partial 1 in cents added on top of the tuning: "railsback" (from B, see
        :func:`railsback_stretch_cents`), "table" (the measured curve of
        :func:`pianosynth.design.keyboard.stretch_cents`, the engine's default tuning, which
        puts A4 5 cents sharp), "none", or 88 cents. Default "railsback" for temperaments,
        "none" for Scala files (whose frequencies are usually meant literally).
    scl, kbm
        Scala scale and keyboard mapping for ``kind="scala"`` (see
        :func:`scala_key_frequencies`).
    settings : dict, optional
        Engine parameter values (for ``a4_hz``, ``stretch_scale`` and the B curve).
    key_overrides : dict, optional
        The preset's other per-key overrides (only their ``inharmonicity_b`` matters here).
    reference_key : int
        Key held at ``a4_hz`` by a temperament (default 69, A4): the temperament is shifted so
        this key's offset is 0.

    Returns
    -------
    dict[int, float]
        ``{midi_key: f1_hz}`` for keys 21..108 (a Scala mapping may leave keys out).

    Raises
    ------
    TuningError
        On an unknown kind or stretch, a missing or malformed Scala file.

    Notes
    -----
    Temperament: f1(k) = a4 2^((k - 69) / 12) 2^((T[k mod 12] - T[ref mod 12]) / 1200)
    2^(s(k) / 1200) with T from :func:`temperament_cents` and s the stretch. Scala:
    f1(k) = f_scala(k) 2^(s(k) / 1200).
    """
    s = dict(settings or {})
    a4 = float(a4_hz if a4_hz is not None else s.get("a4_hz", 440.0))
    kind_l = str(kind).strip().lower()
    need_b = stretch is None or (isinstance(stretch, str)
                                 and stretch.strip().lower() == "railsback")
    b = f0 = None
    if need_b:
        kp = design_keyboard(s, key_overrides)
        b = kp.inharmonicity_b if inharmonicity_b is None else np.asarray(inharmonicity_b, float)
        f0 = kp.f0_hz
    if kind_l == "scala":
        if scl is None:
            raise TuningError("a Scala tuning needs a scale file (scl=...)")
        st = _stretch_array("none" if stretch is None else stretch, b, f0, s)
        if kbm is None:
            ref = int(reference_key)
            kbm = KeyboardMapping(size=0, middle_key=int(root_key), reference_key=ref,
                                  reference_hz=a4 * 2.0 ** ((ref - 69) / 12.0))
        base = scala_key_frequencies(scl, kbm)
        return {k: f * 2.0 ** (st[k - KEY_MIN] / 1200.0) for k, f in base.items()}
    offs = temperament_cents(kind, root_key)
    st = _stretch_array("railsback" if stretch is None else stretch, b, f0, s)
    t = offs[KEYS % 12] - offs[int(reference_key) % 12]
    f1 = equal_tempered_hz(KEYS, a4) * 2.0 ** ((t + st) / 1200.0)
    return {int(k): float(f) for k, f in zip(KEYS, f1)}


def tuning_key_overrides(kind: str = "equal", *, root_key: int = 60, a4_hz: float | None = None,
                         inharmonicity_b=None, stretch=None, scl=None, kbm=None,
                         settings: dict | None = None, key_overrides: dict | None = None,
                         reference_key: int = 69) -> dict[int, dict[str, float]]:
    """Per-key ``f0_hz`` overrides that put partial 1 of every key on a tuning's target.

    Parameters
    ----------
    kind, root_key, a4_hz, stretch, scl, kbm, settings, key_overrides, reference_key
        As :func:`tuning_f1_hz`.
    inharmonicity_b : array_like, shape (88,), optional
        B per key. Default the engine's own B for ``settings`` and ``key_overrides``; it must
        be the B the engine will design with, or partial 1 misses the target.

    Returns
    -------
    dict[int, dict[str, float]]
        ``{midi_key: {"f0_hz": f0}}`` for ``Engine(settings, fs, key_overrides=...)`` (merge
        with a preset's own overrides using :func:`merge_key_overrides`).

    Raises
    ------
    TuningError
        As :func:`tuning_f1_hz`.

    Notes
    -----
    f0 = f1_target / sqrt(1 + B) (eq. 12 with k = 1). The engine recomputes f1 = f0 sqrt(1 + B)
    from the same B, so a later change of ``inharmonicity_scale`` moves partial 1 off the
    target: rebuild the overrides when B changes. Keys whose f0 would fall outside the range
    of ``params.KEY_OVERRIDES["f0_hz"]`` (20..5000 Hz; e.g. a 7-note scale mapped linearly
    runs off the top) are left out with a warning and keep the default tuning.

    Examples
    --------
    >>> ov = tuning_key_overrides("werckmeister3")
    >>> sorted(ov)[:2], list(ov[60])
    ([21, 22], ['f0_hz'])
    """
    targets = tuning_f1_hz(kind, root_key=root_key, a4_hz=a4_hz, inharmonicity_b=inharmonicity_b,
                           stretch=stretch, scl=scl, kbm=kbm, settings=settings,
                           key_overrides=key_overrides, reference_key=reference_key)
    if inharmonicity_b is None:
        b = design_keyboard(settings, key_overrides).inharmonicity_b
    else:
        b = np.asarray(inharmonicity_b, float)
    lo, hi, _ = KEY_OVERRIDES["f0_hz"]
    out, dropped = {}, []
    for k, f in targets.items():
        f0 = float(f / math.sqrt(1.0 + b[k - KEY_MIN]))
        if lo <= f0 <= hi:
            out[k] = {"f0_hz": f0}
        else:
            dropped.append(f"{k} ({f0:.1f} Hz)")
    if dropped:
        warnings.warn(f"tuning: f0 outside {lo:g}..{hi:g} Hz for keys {', '.join(dropped)}; "
                      "they keep the default tuning", stacklevel=2)
    return out


def merge_key_overrides(*overrides: dict | None) -> dict[int, dict[str, float]]:
    """Merge ``{midi_key: {field: value}}`` dicts; later ones win field by field."""
    out: dict[int, dict] = {}
    for ov in overrides:
        for k, fields in (ov or {}).items():
            out.setdefault(int(k), {}).update(fields)
    return out


# --------------------------------------------------------------------------- requests
#: fields of a preset's ``[tuning]`` table.
TUNING_FIELDS = ("temperament", "root", "scala", "kbm", "stretch")

_ROOT_RE = re.compile(r"^([A-Ga-g])(#|b)?(-?\d+)?$")
_PC_OF_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_root(value) -> int:
    """The root ("C") of a temperament as a MIDI key.

    Parameters
    ----------
    value : str or int
        A pitch class (``"C"``, ``"F#"``, ``"Bb"``), a key name in scientific pitch notation
        (``"C4"``, ``"Eb3"``) or a MIDI key number 0..127 (int or digits).

    Returns
    -------
    int
        MIDI key; a bare pitch class gives the key in octave 4 (``"C"`` -> 60, ``"Bb"`` ->
        70). Only ``key % 12`` matters to a temperament.

    Raises
    ------
    TuningError
        On anything else.

    Examples
    --------
    >>> parse_root("Eb"), parse_root("C4"), parse_root(62), parse_root("F#2")
    (63, 60, 62, 42)
    """
    if isinstance(value, bool):
        raise TuningError(f"root must be a note name or MIDI key, not {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        key = int(value)
        if not 0 <= key <= 127:
            raise TuningError(f"root {value!r} is not a MIDI key 0..127")
        return key
    m = _ROOT_RE.match(str(value).strip()) if isinstance(value, str) else None
    if not m:
        raise TuningError(f"root {value!r} is not a note name (C, F#, Bb, C4 ...) or a MIDI "
                          "key number")
    letter, acc, octave = m.groups()
    pc = _PC_OF_LETTER[letter.upper()] + {"#": 1, "b": -1, None: 0}[acc]
    key = 12 * (int(octave) + 1) + pc if octave is not None else 60 + pc
    if not 0 <= key <= 127:
        raise TuningError(f"root {value!r} is outside the MIDI keys 0..127")
    return key


@dataclass(frozen=True)
class TuningSpec:
    """One tuning request for the whole keyboard (a preset's ``[tuning]`` or the CLI flags).

    Attributes
    ----------
    temperament : str or None
        A name of :data:`TEMPERAMENTS` (canonical), or None for a Scala tuning.
    root_key : int
        Root of the temperament (MIDI key, only ``% 12`` matters); for a Scala scale without
        a mapping, the key that plays degree 0. Default 60 (C).
    scala, kbm : str or None
        Paths of the .scl and optional .kbm file (as the caller resolved them).
    stretch : {"railsback", "table", "none"} or None
        Stretch of partial 1 (see :func:`tuning_f1_hz`); None: "railsback" for a
        temperament, "none" for a Scala scale.
    """

    temperament: str | None = None
    root_key: int = 60
    scala: str | None = None
    kbm: str | None = None
    stretch: str | None = None

    def key_overrides(self, settings: dict | None = None,
                      key_overrides: dict | None = None) -> dict[int, dict[str, float]]:
        """Per-key overrides of the tuning merged with ``key_overrides`` (those win).

        Parameters
        ----------
        settings : dict, optional
            Engine parameters (``a4_hz``, ``stretch_scale``, the B curve).
        key_overrides : dict, optional
            The preset's own ``[keys.N]`` overrides: their B is used, and their fields
            (an explicit ``f0_hz`` too) win over the tuning's.

        Raises
        ------
        TuningError
            Unreadable or malformed Scala files (naming file and line).
        """
        keys = {int(k): dict(v) for k, v in (key_overrides or {}).items()}
        s = dict(settings or {})
        if self.scala is not None:
            scl = read_scl(self.scala)
            kbm = read_kbm(self.kbm) if self.kbm else None
            over = tuning_key_overrides("scala", scl=scl, kbm=kbm, root_key=self.root_key,
                                        stretch=self.stretch, settings=s, key_overrides=keys)
        else:
            over = tuning_key_overrides(self.temperament or "equal", root_key=self.root_key,
                                        stretch=self.stretch, settings=s, key_overrides=keys)
        return merge_key_overrides(over, keys)


def tuning_spec_from_table(table: dict, base_dir=None, source: str = "[tuning]",
                           check_files: bool = True) -> tuple[TuningSpec | None, dict]:
    """Validate a preset's ``[tuning]`` table.

    Parameters
    ----------
    table : dict
        Any of ``temperament`` (a name of :data:`TEMPERAMENTS` or an alias), ``root`` (see
        :func:`parse_root`), ``scala`` (path of a .scl file), ``kbm`` (path of a .kbm file, only
        with ``scala``), ``stretch`` ("railsback", "table" or "none"). ``temperament`` and
        ``scala`` exclude each other; neither means "equal".
    base_dir : path, optional
        Folder relative paths are resolved against (the preset's folder); default the current
        folder.
    source : str
        Prefix of error messages (the preset file).
    check_files : bool
        Read and parse the Scala files now (errors name the file and line).

    Returns
    -------
    spec : TuningSpec or None
        File paths resolved against ``base_dir``; None for an empty table (no tuning).
    normalised : dict
        The table as it should be saved: canonical temperament name, root as a pitch class
        name of ``PITCH_CLASS_NAMES`` (with the octave if one was given: ``"Eb3"``), paths as
        written, lower-case stretch.

    Raises
    ------
    TuningError
        Unknown field (with the allowed ones), wrong type, unknown temperament or stretch, a
        ``kbm`` without ``scala``, both ``temperament`` and ``scala``, a missing or malformed
        file.
    """
    if not isinstance(table, dict):
        raise TuningError(f"{source}: [tuning] must be a table, not {type(table).__name__}")
    for k in table:
        if k not in TUNING_FIELDS:
            raise TuningError(f"{source}: unknown field {k!r} in [tuning]; allowed: "
                              f"{', '.join(TUNING_FIELDS)}")
    if not table:
        return None, {}
    for k in ("temperament", "scala", "kbm", "stretch"):
        if k in table and not isinstance(table[k], str):
            raise TuningError(f"{source}: tuning.{k} must be a string, not {table[k]!r}")
    norm: dict = {}
    temperament = None
    if "temperament" in table:
        try:
            temperament = _canonical_temperament(table["temperament"])
        except TuningError as e:
            raise TuningError(f"{source}: tuning.temperament: {e}") from None
        norm["temperament"] = temperament
    root = 60
    if "root" in table:
        try:
            root = parse_root(table["root"])
        except TuningError as e:
            raise TuningError(f"{source}: tuning.{e}") from None
        bare = isinstance(table["root"], str) and bool(re.fullmatch(r"\s*[A-Ga-g][#b]?\s*",
                                                                    table["root"]))
        norm["root"] = PITCH_CLASS_NAMES[root % 12] + ("" if bare else str(root // 12 - 1))
    base = Path(base_dir) if base_dir is not None else Path(".")
    paths = {}
    for k, ext in (("scala", ".scl"), ("kbm", ".kbm")):
        if k in table:
            text = table[k]
            if not text.strip():
                raise TuningError(f"{source}: tuning.{k} must name a {ext} file")
            paths[k] = str(base / Path(os.path.expanduser(text)))
            norm[k] = text
    if "kbm" in paths and "scala" not in paths:
        raise TuningError(f"{source}: tuning.kbm needs a tuning.scala scale file")
    if temperament is not None and "scala" in paths:
        raise TuningError(f"{source}: give either tuning.temperament or tuning.scala, not both")
    stretch = None
    if "stretch" in table:
        stretch = table["stretch"].strip().lower()
        if stretch not in STRETCH_KINDS:
            raise TuningError(f"{source}: tuning.stretch {table['stretch']!r} is unknown; "
                              f"allowed: {', '.join(STRETCH_KINDS)}")
        norm["stretch"] = stretch
    if check_files:
        for k, path in paths.items():
            if not os.path.isfile(path):
                raise TuningError(f"{source}: tuning.{k} file not found: {path}")
        for k, read in (("scala", read_scl), ("kbm", read_kbm)):
            if k in paths:
                try:
                    read(paths[k])
                except TuningError as e:       # names the file and line
                    raise TuningError(f"{source}: tuning.{k}: {e}") from None
    spec = TuningSpec(temperament=None if "scala" in paths else (temperament or "equal"),
                      root_key=root, scala=paths.get("scala"), kbm=paths.get("kbm"),
                      stretch=stretch)
    return spec, norm
