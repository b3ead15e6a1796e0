"""The ``pianosynth`` command line (also ``python -m pianosynth``).

Commands::

    pianosynth render IN.mid [-o OUT.wav] [--preset NAME|FILE] [--sample-rate HZ]
                             [--subtype PCM_16|PCM_24|FLOAT] [--normalize] [--tail auto|S]
    pianosynth note KEY [-o OUT.wav] [--velocity 1-127] [--duration S] ...
    pianosynth presets [--template | --check FILE ...]
    pianosynth play | devices | gui ...     (when pianosynth.io.live / pianosynth.gui exist)
    pianosynth fit RECORDING --key KEY -o PRESET.toml [--base PRESET] [--refine]

Bad input (files, presets, values) ends with one line ``pianosynth: error: <message>`` on
stderr and exit status 2, never a traceback; a traceback means a bug.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import re
import sys
import time
from pathlib import Path

from . import __version__
from .errors import PianosynthError

PROG = "pianosynth"
#: output sample rates accepted (Hz).
SAMPLE_RATE_MIN, SAMPLE_RATE_MAX = 8000, 192000
DEFAULT_SAMPLE_RATE = 48000
NORMALIZE_PEAK_DB = -1.0

# ---------------------------------------------------------------------------- key names
_KEY_RE = re.compile(r"^([A-Ga-g])(#|♯|b|♭)?(-?\d+)$")
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KEY_MIN, KEY_MAX = 21, 108


def parse_key(text: str | int) -> int:
    """A piano key as MIDI number: ``"60"``, ``"C4"``, ``"F#5"``, ``"Bb3"``, ``"A0"`` ...

    Scientific pitch notation (C4 = middle C = 60, A0 = 21, C8 = 108); ``#``/``b`` (or
    ``♯``/``♭``) for sharp and flat.

    Raises
    ------
    PianosynthError
        Not a key name or number, or off the piano (outside 21..108).
    """
    s = str(text).strip()
    if re.fullmatch(r"\d{1,3}", s):
        key = int(s)
    else:
        m = _KEY_RE.match(s)
        if not m:
            raise PianosynthError(f"invalid key {s!r}: give a MIDI number {KEY_MIN}..{KEY_MAX} "
                                  "or a name like A0, C4, F#5, Bb3")
        letter, acc, octave = m.groups()
        key = 12 * (int(octave) + 1) + _PITCH_CLASS[letter.upper()] \
            + {"#": 1, "♯": 1, "b": -1, "♭": -1, None: 0}[acc]
    if not KEY_MIN <= key <= KEY_MAX:
        raise PianosynthError(f"key {s!r} (MIDI {key}) is off the piano: allowed "
                              f"A0..C8 (MIDI {KEY_MIN}..{KEY_MAX})")
    return key


def key_name(key: int) -> str:
    """MIDI number -> name with sharps, e.g. 60 -> ``"C4"``, 78 -> ``"F#5"``."""
    return f"{_NAMES[key % 12]}{key // 12 - 1}"


# ------------------------------------------------------------------------ argument types
def _int_range(lo: int, hi: int, what: str):
    def conv(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, not {text!r}")
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be {lo}..{hi}, not {v}")
        return v
    return conv


def _seconds(lo: float, hi: float, what: str):
    def conv(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number of seconds, not {text!r}")
        if not (math.isfinite(v) and lo <= v <= hi):
            raise argparse.ArgumentTypeError(f"{what} must be {lo:g}..{hi:g} s, not {text}")
        return v
    return conv


def _tail(text):
    from .io.render import parse_tail
    try:
        return parse_tail(text)
    except PianosynthError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _subtype(text):
    s = text.upper()
    if s not in ("PCM_16", "PCM_24", "FLOAT"):
        raise argparse.ArgumentTypeError(f"choose PCM_16, PCM_24 or FLOAT, not {text!r}")
    return s


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", metavar="NAME|FILE",
                   help="preset name (see 'pianosynth presets') or .toml file "
                        "(default: default)")
    p.add_argument("--sample-rate", type=_int_range(SAMPLE_RATE_MIN, SAMPLE_RATE_MAX,
                                                    "sample rate"),
                   default=DEFAULT_SAMPLE_RATE, metavar="HZ",
                   help=f"output rate in Hz (default {DEFAULT_SAMPLE_RATE}; e.g. 44100, "
                        "48000, 96000; the engine may refuse very low rates)")
    p.add_argument("--subtype", type=_subtype, default=None, metavar="PCM_16|PCM_24|FLOAT",
                   help="sample format (default PCM_24; FLOAT is 32-bit float, WAV only)")
    p.add_argument("--normalize", action="store_true",
                   help=f"scale the output so its peak is {NORMALIZE_PEAK_DB:g} dBFS")
    p.add_argument("--tail", type=_tail, default="auto", metavar="auto|SECONDS",
                   help="render this long after the last event; 'auto' (default) stops when "
                        "the piano is silent (-90 dB), at most 30 s after it")
    p.add_argument("--block-size", type=_int_range(1, 65536, "block size"), default=None,
                   metavar="N", help="frames per engine block (default 4096, or 32768 on two "
                                     "threads; the output does not depend on it)")
    p.add_argument("--threads", type=int, choices=(1, 2), default=None,
                   help="1: render on one thread; 2: two, pipelined (the same output, bit "
                        "for bit; the default of render where two CPUs and numba's OpenMP "
                        "layer are there; note renders on one unless asked)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no summary line")
    _add_engine_arguments(p)


def _add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """--quality and the tuning options (render, note)."""
    p.add_argument("--quality", choices=("high", "normal", "eco"), default="high",
                   help="string rates: high (bass at fs/2), normal (fs/4 and fs/2), "
                        "eco (fs/4, shorter dispersion filters); default high")
    p.add_argument("--tuning", default=None, metavar="NAME|FILE.scl",
                   help="temperament (equal, werckmeister3, vallotti, kirnberger3, "
                        "quarter_comma_meantone, just) or a Scala .scl file; overrides the "
                        "preset's [tuning]")
    p.add_argument("--tuning-root", default=None, metavar="KEY",
                   help="root of a temperament (a key or pitch-class name, or number; "
                        "default the preset's root, else C4)")
    p.add_argument("--kbm", default=None, metavar="FILE.kbm",
                   help="Scala keyboard mapping for a .scl tuning")


def _tuning_spec(args, preset):
    """The tuning to play: the preset's ``[tuning]`` with the command line's flags over it.

    ``--tuning`` replaces the preset's temperament or scale (and its kbm); ``--tuning-root``
    and ``--kbm`` replace the root and mapping; the preset's ``stretch`` stays. None when
    neither asks for a tuning."""
    from dataclasses import replace

    from .design import tuning as T
    spec = preset.tuning_spec()
    name = getattr(args, "tuning", None)
    root_text = getattr(args, "tuning_root", None)
    kbm = getattr(args, "kbm", None)
    if name:
        stretch = spec.stretch if spec is not None else None
        root = spec.root_key if spec is not None else 60
        if name.lower().endswith(".scl"):
            spec = T.TuningSpec(scala=name, root_key=root, stretch=stretch)
        else:
            try:
                spec = T.TuningSpec(temperament=T.canonical_temperament(name),
                                    root_key=root, stretch=stretch)
            except T.TuningError as e:
                raise PianosynthError(f"--tuning {name!r}: {e}") from None
    if root_text is not None:
        if spec is None:
            raise PianosynthError("--tuning-root goes with a --tuning (or a preset's [tuning])")
        try:
            root = parse_key(root_text) if re.search(r"\d", str(root_text)) \
                else T.parse_root(root_text)
        except T.TuningError as e:
            raise PianosynthError(f"--tuning-root: {e}") from None
        spec = replace(spec, root_key=root)
    if kbm:
        if spec is None or spec.scala is None:
            raise PianosynthError("--kbm goes with a Scala .scl --tuning (or a preset's "
                                  "[tuning] scala)")
        spec = replace(spec, kbm=kbm)
    return spec


def _tuning_overrides(args, preset) -> dict:
    """Per-key overrides of the preset merged with those of the tuning (preset keys win):
    :func:`_tuning_spec` through :meth:`TuningSpec.key_overrides`, the one code path of a
    preset's ``[tuning]`` and of ``--tuning``."""
    keys = {int(k): dict(v) for k, v in preset.keys.items()}
    spec = _tuning_spec(args, preset)
    if spec is None:
        return keys
    return spec.key_overrides(dict(preset.settings), keys)


# --------------------------------------------------------------------------- the commands
def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _load_preset(spec: str):
    from .presets import load_preset
    preset = load_preset(spec)
    for w in preset.warnings:
        _warn(w)
    return preset


def _fmt_duration(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m)}:{s:04.1f}" if m else f"{s:.1f} s"


def _compile_kernels_visibly(sample_rate: int, pipelined: bool = False) -> None:
    """First run after an install or update: compile the kernels on a small engine with
    progress lines on stderr (a cold compile takes about a minute and prints nothing);
    ``pipelined``: the two-thread offline loop too."""
    from .dsp.jit import compile_with_progress, kernels_cached
    from .engine.core import Engine
    if kernels_cached(pipelined):
        return
    import numpy as np

    from .engine.events import make_events

    def work():
        eng = Engine({}, sample_rate, max_voices=4)
        ev = make_events([(0, 0xB0, 64, 127), (0, 0x90, 60, 64), (128, 0x80, 60, 64)])
        eng.render_frames(256, ev)
        if pipelined:                   # the offline loop on two threads, too
            eng.reset()
            eng.render(np.zeros((256, 2)), ev, pipelined=True)
    compile_with_progress(work)


def _render_and_write(args, events, label: str, retunes=None, threads=None) -> int:
    """Shared tail of ``render`` and ``note``: engine, block loop, normalise, write, summary.
    ``threads``: the default when ``--threads`` is not given (None: two where available)."""
    from .engine.core import Engine, pipelined_available
    from .io.audio_file import write_audio
    from .io.render import normalize, peak_dbfs, render_midi

    threads = args.threads if args.threads is not None else threads
    pipelined = threads != 1 and pipelined_available()
    if args.threads == 2 and not pipelined:
        _warn("--threads 2: rendering on one thread (two need two CPUs and numba's OpenMP "
              "threading layer, Debian package libgomp1)")

    preset = args.preset_obj
    try:
        engine = Engine(dict(preset.settings), args.sample_rate, args.key_overrides,
                        quality=args.quality, velocity_points=preset.velocity_points())
    except ValueError as e:                    # the engine refuses a rate or setting
        raise PianosynthError(f"cannot set up the engine: {e}") from None
    if not args.quiet:
        _compile_kernels_visibly(args.sample_rate, pipelined)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    audio = render_midi(events, engine, args.sample_rate, block_size=args.block_size,
                        tail=args.tail, progress=not args.quiet, retunes=retunes,
                        pipelined=pipelined)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if args.normalize:
        normalize(audio, NORMALIZE_PEAK_DB)
    clipped = write_audio(args.output, audio, args.sample_rate, args.subtype)
    if clipped:
        _warn(f"{clipped} samples clipped at full scale; use --normalize or lower "
              "master_gain_db")
    if not args.quiet:
        seconds = audio.shape[0] / args.sample_rate
        peak = peak_dbfs(audio)
        speed = seconds / wall if wall > 0 else math.inf
        print(f"{args.output}: {label}, {_fmt_duration(seconds)} of audio at "
              f"{args.sample_rate} Hz {args.subtype_resolved}, peak {peak:.1f} dBFS, "
              f"preset {preset.name!r}; rendered at {speed:.1f}x real time "
              f"(CPU {cpu:.1f} s, wall {wall:.1f} s)")
    return 0


def _prepare_output(args) -> None:
    """Early checks before any rendering: output path and format, then the preset."""
    from .io.audio_file import check_output_path
    _, args.subtype_resolved = check_output_path(args.output, args.subtype)
    args.subtype = args.subtype_resolved
    args.preset_obj = _load_preset(args.preset)
    args.key_overrides = _tuning_overrides(args, args.preset_obj)


def cmd_render(args) -> int:
    """``pianosynth render IN.mid -o OUT.wav``: a MIDI file through the engine to a file."""
    from .io.midi_file import read_midi_content

    if args.output is None:
        args.output = Path(args.input).with_suffix(".wav").name
    _prepare_output(args)
    content = read_midi_content(args.input)
    warning = content.warning(str(args.input))
    if warning:
        _warn(warning)
    events = content.events
    n_notes = int((((events["status"] & 0xF0) == 0x90) & (events["data2"] > 0)).sum())
    label = f"{n_notes} notes from {Path(args.input).name}"
    if content.retunes:
        n = len(content.retunes)
        label += f", {n} MTS retuning{'s' if n > 1 else ''}"
    return _render_and_write(args, events, label, retunes=content.retunes)


def cmd_note(args) -> int:
    """``pianosynth note KEY``: one note to a file."""
    from .io.render import note_events

    key = parse_key(args.key)
    if args.output is None:
        args.output = f"note_{key_name(key).replace('#', 's')}.wav"
    _prepare_output(args)
    events = note_events(key, args.velocity, args.duration)
    # one thread unless asked: a single note gains little from two, and its first run
    # would compile the two-thread loop too (the cold start-up target is for this command)
    return _render_and_write(args, events, f"{key_name(key)} (MIDI {key}) velocity "
                                           f"{args.velocity} held {args.duration:g} s",
                             threads=1)


def cmd_presets(args) -> int:
    """``pianosynth presets``: list presets, print the template, or check files."""
    from .presets import default_preset, format_preset, list_presets, load_preset

    if args.template:
        sys.stdout.write(format_preset(default_preset()))
        return 0
    if args.check:
        for spec in args.check:
            preset = load_preset(spec)
            for w in preset.warnings:
                _warn(w)
            print(f"{spec}: ok ({preset.name!r}, {len(preset.settings)} parameters, "
                  f"{len(preset.keys)} key overrides)")
        return 0
    for name, path in list_presets().items():
        print(f"{name:<20} {path if path else '(built in)'}")
    return 0


# --------------------------------------------------------------- optional (other modules)
#: (command, module, add-arguments function or None, command function, help)
OPTIONAL_COMMANDS = (
    ("play", "pianosynth.io.live", "add_play_arguments", "cmd_play",
     "play live: MIDI input through the sound card"),
    ("devices", "pianosynth.io.live", "add_devices_arguments", "cmd_devices",
     "list audio outputs and MIDI inputs"),
    ("gui", "pianosynth.gui", "add_gui_arguments", "cmd_gui",
     "open the control panel"),
    ("fit", "pianosynth.fit", "add_fit_arguments", "cmd_fit",
     "fit one key's parameters to a recorded note and write a preset"),
)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _chosen_command(argv) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def _unavailable(sub, name: str, help_text: str, message: str) -> None:
    """Register ``name`` as a command that takes any arguments and fails with ``message``."""
    # no option prefix: every word (even '--x' or '-h') is swallowed as a plain argument
    p = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="\x00")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

    def fail(args):
        raise PianosynthError(message)
    p.set_defaults(func=fail)


def _add_optional_command(sub, chosen, name, module, add_fn, cmd_fn, help_text) -> None:
    """Register a command implemented in another module, importing it only when chosen."""
    exists = _module_exists(module)
    if chosen != name:                          # listed in help only; nothing imported
        sub.add_parser(name, help=help_text if exists else
                       f"{help_text} (not in this installation yet)")
        return
    if not exists:
        return _unavailable(sub, name, help_text, f"the '{name}' command is not part of this "
                                                  f"installation yet ({module} is missing)")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        extra = " (install the GUI extras: pip install -e '.[gui]')" if name == "gui" else ""
        return _unavailable(sub, name, help_text, f"'{name}' needs the Python package "
                                                  f"{e.name!r}, which is not installed{extra}")
    except (ImportError, OSError) as e:
        return _unavailable(sub, name, help_text, f"'{name}' is unavailable: {e}")
    cmd = getattr(mod, cmd_fn, None)
    if cmd is None:
        return _unavailable(sub, name, help_text, f"the '{name}' command is not ready yet "
                                                  f"({module}.{cmd_fn} is missing)")
    p = sub.add_parser(name, help=help_text, description=help_text)
    add = getattr(mod, add_fn, None)
    if add is not None:
        add(p)
    p.set_defaults(func=cmd)


# ------------------------------------------------------------------------------- parser
def build_parser(argv=None) -> argparse.ArgumentParser:
    """The argument parser; ``argv`` decides which optional command module gets imported."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog=PROG, description="Physical-model piano synthesizer (Bank et al. 2003).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("render", help="render a MIDI file to WAV/FLAC",
                       description="Render a standard MIDI file (every channel plays the "
                                   "piano) to a .wav or .flac file.")
    p.add_argument("input", metavar="IN.mid", help="standard MIDI file (type 0, 1 or 2)")
    p.add_argument("-o", "--output", metavar="OUT.wav",
                   help="output .wav or .flac (default: IN with .wav, in this folder)")
    _add_output_arguments(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("note", help="render one note to WAV/FLAC",
                       description="Render one note: KEY is a MIDI number 21..108 or a "
                                   "name (A0, C4, F#5, Bb3; C4 = middle C = 60).")
    p.add_argument("key", metavar="KEY", help="MIDI number 21..108 or name like C4, F#5, Bb3")
    p.add_argument("-o", "--output", metavar="OUT.wav",
                   help="output .wav or .flac (default: note_<KEY>.wav)")
    p.add_argument("--velocity", type=_int_range(1, 127, "velocity"), default=100,
                   help="MIDI velocity 1..127 (default 100)")
    p.add_argument("--duration", type=_seconds(0.0, 600.0, "duration"), default=2.0,
                   metavar="S", help="seconds the key is held (default 2)")
    _add_output_arguments(p)
    p.set_defaults(func=cmd_note)

    p = sub.add_parser("presets", help="list presets, print a template, check preset files")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--template", action="store_true",
                   help="print the default preset with every parameter, range and unit")
    g.add_argument("--check", nargs="+", metavar="FILE", help="validate preset files")
    p.set_defaults(func=cmd_presets)

    chosen = _chosen_command(argv)
    for spec in OPTIONAL_COMMANDS:
        _add_optional_command(sub, chosen, *spec)
    return parser


def _os_error_text(e: OSError) -> str:
    if e.strerror and e.filename:
        return f"{e.strerror}: {e.filename}"
    return e.strerror or str(e)


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:                    # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return int(args.func(args) or 0)
    except PianosynthError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{PROG}: error: out of memory (try a lower --sample-rate or a shorter piece)",
              file=sys.stderr)
    except BrokenPipeError:                    # e.g. `pianosynth presets --template | head`
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except OSError as e:                       # the environment (disk full, permissions ...)
        print(f"{PROG}: error: {_os_error_text(e)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
