"""Presets: the instrument's settings as TOML files.

Format (``schema_version`` follows :data:`pianosynth.engine.params.SCHEMA_VERSION`)::

    schema_version = 1
    name = "default"
    description = "optional free text"

    [parameters]            # any subset of pianosynth.engine.params.PARAMETERS
    a4_hz = 440.0
    polyphony = 64

    [keys.60]               # optional per-key overrides (MIDI key 21..108),
    f0_hz = 261.8           # fields from pianosynth.engine.params.KEY_OVERRIDES
    t60_f0_s = 14.0

    [tuning]                # optional (schema 2): temperament or Scala scale
    temperament = "werckmeister3"   # or scala = "my.scl" (+ kbm = "my.kbm"), relative
    root = "C"                      # to the preset's folder
    stretch = "railsback"           # or "table", "none"

    [velocity]              # optional (schema 2): MIDI velocity -> hammer speed (m/s)
    points = [[1, 0.4], [64, 2.0], [127, 5.0]]      # or curve = "soft" | "normal" | "hard"

Parameters a preset leaves out keep their defaults from the parameter table. A file without
``schema_version`` loads as version 1 with a warning (hand-written files usually omit it); a
file from a newer pianosynth (higher version) is refused rather than half-understood. A
preset is saved with the lowest schema version that holds it: 1 without [tuning],
[velocity] or a parameter added in schema 2 (damper/pedal noise), so older builds still
read it; 2 with them. ``[tuning]`` gives the same
keyboard as the command line's ``--tuning/--tuning-root/--kbm`` (which override it);
``[velocity]`` replaces the map of velocity_min_m_s / velocity_max_m_s / velocity_curve.

Where named presets live (``load_preset("default")``), searched in this order:

1. the user's preset folder, :func:`user_preset_dir` (``~/.local/share/pianosynth/presets``
   on Linux): saved presets, which may shadow factory ones;
2. the factory folder ``presets/`` at the top of the project (a source checkout or an
   editable install, which is how ``scripts/setup_env.sh`` installs);
3. ``default`` is also built in (the parameter table's defaults), so it resolves even from an
   installed wheel that carries no ``presets/`` folder.

Anything that looks like a path (contains a slash or ends in ``.toml``) is loaded as a file.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from .engine.params import (KEY_OVERRIDES, PARAM_BY_NAME, PARAMETERS, SCHEMA_VERSION,
                            VELOCITY_CURVES, validate_velocity_points)
from .errors import PianosynthError

#: lowest and highest piano key a ``[keys.N]`` table may name (A0 .. C8).
KEY_MIN, KEY_MAX = 21, 108
#: top-level entries a preset file may contain.
TOP_LEVEL_KEYS = ("schema_version", "name", "description", "parameters", "keys", "tuning",
                  "velocity")
#: fields of the [velocity] table.
VELOCITY_FIELDS = ("curve", "points")
#: the factory preset folder of a source checkout.
FACTORY_PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]*$")


@dataclass
class Preset:
    """A named set of parameter values and per-key overrides.

    Attributes
    ----------
    name : str
        Preset name (the file stem when the file gives none).
    settings : dict[str, float | int]
        Parameter values by name (a subset of ``PARAMETERS``); integer parameters are ``int``.
    keys : dict[int, dict[str, float]]
        Per-key overrides ``{midi_key: {field: value}}`` (fields of ``KEY_OVERRIDES``).
    description : str
        Free text.
    path : Path or None
        File it was loaded from (``None`` for built-in or new presets).
    warnings : list[str]
        Non-fatal remarks from loading (e.g. missing ``schema_version``).
    tuning : dict
        The ``[tuning]`` table, normalised (see
        :func:`pianosynth.design.tuning.tuning_spec_from_table`); ``{}`` for none. Scala
        paths as written, relative to the preset's folder.
    velocity : dict
        The ``[velocity]`` table: ``{"curve": name}`` or ``{"points": [[vel, m_s], ...]}``;
        ``{}`` for none.
    """

    name: str
    settings: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    description: str = ""
    path: Path | None = field(default=None, compare=False)
    warnings: list = field(default_factory=list, compare=False)
    tuning: dict = field(default_factory=dict)
    velocity: dict = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Folder the ``[tuning]`` file paths are relative to (the preset's, else ".")."""
        return self.path.parent if self.path is not None else Path(".")

    def tuning_spec(self):
        """The ``[tuning]`` table as a :class:`~pianosynth.design.tuning.TuningSpec` (paths
        resolved against :attr:`base_dir`), or None. Raises PianosynthError if invalid."""
        if not self.tuning:
            return None
        from .design.tuning import tuning_spec_from_table
        spec, _ = tuning_spec_from_table(self.tuning, self.base_dir, f"preset {self.name!r}")
        return spec

    def key_overrides(self) -> dict[int, dict[str, float]]:
        """Per-key overrides for the engine: the ``[tuning]`` table's ``f0_hz`` merged with
        the ``[keys.N]`` tables (which win field by field)."""
        keys = {int(k): dict(v) for k, v in self.keys.items()}
        spec = self.tuning_spec()
        return spec.key_overrides(self.settings, keys) if spec is not None else keys

    def velocity_points(self) -> list | None:
        """``[(midi_velocity, hammer_m_s), ...]`` of the ``[velocity]`` table, or None."""
        if "curve" in self.velocity:
            return [tuple(p) for p in VELOCITY_CURVES[self.velocity["curve"]]]
        if "points" in self.velocity:
            return [(int(v), float(m)) for v, m in self.velocity["points"]]
        return None


# ---------------------------------------------------------------------------------- helpers
def _fmt(x: float) -> str:
    return f"{x:g}"


def _range_text(lo: float, hi: float, unit: str) -> str:
    unit = "" if unit in ("", "x", "bool") else f" {unit}"
    return f"{_fmt(lo)} to {_fmt(hi)}{unit}"


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    close += [c for c in sorted(choices) if len(word) >= 2 and c not in close
              and (c.startswith(word) or word.startswith(c))]
    close = close[:3]
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "; allowed: " + ", ".join(sorted(choices))


def _type_name(value) -> str:
    return {str: "a string", bool: "a boolean", list: "an array", dict: "a table"}.get(
        type(value), type(value).__name__)


def _number(value, where: str, *, integer: bool = False, boolean: bool = False) -> float | int:
    """Check that ``value`` is a finite number (a bool only where ``boolean``)."""
    if isinstance(value, bool):
        if boolean:
            return int(value)
        raise PianosynthError(f"{where} must be a number, not {_type_name(value)} ({value!r})")
    if not isinstance(value, (int, float)):
        raise PianosynthError(f"{where} must be a number, not {_type_name(value)} ({value!r})")
    if not math.isfinite(value):
        raise PianosynthError(f"{where} must be a finite number, not {value!r}")
    if integer:
        if float(value) != int(value):
            raise PianosynthError(f"{where} must be a whole number, not {value!r}")
        return int(value)
    return float(value)


# ------------------------------------------------------------------------------- validation
def validate_settings(settings: dict, source: str = "settings") -> dict:
    """Check parameter values against the parameter table.

    Parameters
    ----------
    settings : dict[str, number]
        ``{parameter_name: value}``, any subset of ``PARAMETERS``.
    source : str
        Prefix for error messages (a file name).

    Returns
    -------
    dict[str, float | int]
        A normalised copy: floats, ``int`` for integer parameters (``true``/``false``
        accepted for on/off parameters).

    Raises
    ------
    PianosynthError
        Unknown name (with close matches), wrong type, or value outside the range (with
        range and unit).
    """
    if not isinstance(settings, dict):
        raise PianosynthError(f"{source}: [parameters] must be a table, not {_type_name(settings)}")
    out = {}
    for name, value in settings.items():
        p = PARAM_BY_NAME.get(name)
        if p is None:
            raise PianosynthError(f"{source}: unknown parameter {name!r}"
                                  + _did_you_mean(str(name), PARAM_BY_NAME))
        where = f"{source}: parameter {name}"
        v = _number(value, where, integer=p.integer, boolean=p.unit == "bool")
        if not p.min <= v <= p.max:
            raise PianosynthError(f"{where} = {_fmt(v)} is out of range "
                                  f"({_range_text(p.min, p.max, p.unit)})")
        out[name] = v
    return out


def parse_key_label(label, source: str = "keys") -> int:
    """``"60"`` or ``60`` -> 60, checked to lie on the piano (21..108)."""
    text = str(label).strip()
    if isinstance(label, bool) or not re.fullmatch(r"\d{1,3}", text):
        raise PianosynthError(f"{source}: per-key table [keys.{label}] must be named by a MIDI "
                              f"key number {KEY_MIN}..{KEY_MAX} (e.g. [keys.60] for C4)")
    key = int(text)
    if not KEY_MIN <= key <= KEY_MAX:
        raise PianosynthError(f"{source}: key {key} in [keys.{label}] is off the piano "
                              f"(allowed {KEY_MIN}..{KEY_MAX}, A0..C8)")
    return key


def validate_keys(keys: dict, source: str = "keys") -> dict[int, dict[str, float]]:
    """Check per-key overrides ``{key: {field: value}}`` against ``KEY_OVERRIDES``.

    Returns a normalised copy with ``int`` keys (sorted) and float values; raises
    :class:`PianosynthError` naming the key and field on any problem.
    """
    if not isinstance(keys, dict):
        raise PianosynthError(f"{source}: [keys] must be a table of [keys.N] tables, "
                              f"not {_type_name(keys)}")
    out: dict[int, dict[str, float]] = {}
    for label, fields in keys.items():
        key = parse_key_label(label, source)
        if key in out:
            raise PianosynthError(f"{source}: key {key} is given twice in [keys]")
        if not isinstance(fields, dict):
            raise PianosynthError(f"{source}: keys.{label} must be a table of overrides, "
                                  f"not {_type_name(fields)}")
        row = {}
        for name, value in fields.items():
            if name not in KEY_OVERRIDES:
                raise PianosynthError(f"{source}: unknown per-key field {name!r} in "
                                      f"[keys.{label}]" + _did_you_mean(str(name), KEY_OVERRIDES))
            lo, hi, unit = KEY_OVERRIDES[name]
            where = f"{source}: keys.{label}.{name}"
            v = _number(value, where)
            if not lo <= v <= hi:
                raise PianosynthError(f"{where} = {_fmt(v)} is out of range "
                                      f"({_range_text(lo, hi, unit)})")
            row[name] = v
        out[key] = row
    return dict(sorted(out.items()))


def validate_velocity(table, source: str = "velocity") -> dict:
    """Check a ``[velocity]`` table: ``curve = "soft"|"normal"|"hard"`` or ``points =
    [[velocity, m/s], ...]`` (at least 2, velocities 1..127 increasing, 0.05..10 m/s not
    decreasing). Returns it normalised; raises :class:`PianosynthError`."""
    if not isinstance(table, dict):
        raise PianosynthError(f"{source}: [velocity] must be a table, not {_type_name(table)}")
    for k in table:
        if k not in VELOCITY_FIELDS:
            raise PianosynthError(f"{source}: unknown field {k!r} in [velocity]"
                                  + _did_you_mean(str(k), VELOCITY_FIELDS))
    if "curve" in table and "points" in table:
        raise PianosynthError(f"{source}: give either velocity.curve or velocity.points, "
                              "not both")
    if "curve" in table:
        curve = table["curve"]
        if not isinstance(curve, str) or curve.strip().lower() not in VELOCITY_CURVES:
            raise PianosynthError(f"{source}: unknown velocity.curve {curve!r}; allowed: "
                                  + ", ".join(VELOCITY_CURVES) + " (or velocity.points)")
        return {"curve": curve.strip().lower()}
    if "points" in table:
        try:
            pts = validate_velocity_points(table["points"])
        except ValueError as e:
            raise PianosynthError(f"{source}: velocity.points: {e}") from None
        return {"points": [[v, m] for v, m in pts]}
    return {}


def validate_tuning(table, source: str = "tuning", base_dir=None,
                    check_files: bool = True) -> dict:
    """Check a ``[tuning]`` table (see :func:`pianosynth.design.tuning.tuning_spec_from_table`);
    returns it normalised, raises :class:`PianosynthError` (files named with their line)."""
    from .design.tuning import tuning_spec_from_table
    _, norm = tuning_spec_from_table(table, base_dir, source, check_files=check_files)
    return norm


def preset_from_dict(data: dict, source: str = "preset", default_name: str = "preset",
                     base_dir=None) -> Preset:
    """Validate a parsed preset document (the TOML tables as a dict) into a :class:`Preset`.

    ``base_dir`` is the folder the ``[tuning]`` file paths are relative to (default ".")."""
    if not isinstance(data, dict):
        raise PianosynthError(f"{source}: a preset must be a TOML table")
    for k in data:
        if k not in TOP_LEVEL_KEYS:
            raise PianosynthError(f"{source}: unknown top-level entry {k!r}"
                                  + _did_you_mean(str(k), TOP_LEVEL_KEYS))
    warnings = []
    if "schema_version" not in data:
        warnings.append(f"{source}: no schema_version; reading it as schema_version = 1")
        version = 1
    else:
        version = data["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise PianosynthError(f"{source}: schema_version must be a whole number, "
                                  f"not {_type_name(version)} ({version!r})")
        if version > SCHEMA_VERSION:
            raise PianosynthError(f"{source}: schema_version {version} is newer than this "
                                  f"pianosynth supports ({SCHEMA_VERSION}); upgrade pianosynth "
                                  "to load this preset")
        if version < 1:
            raise PianosynthError(f"{source}: schema_version {version} is invalid "
                                  f"(allowed 1..{SCHEMA_VERSION})")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise PianosynthError(f"{source}: name must be a non-empty string, not {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise PianosynthError(f"{source}: description must be a string, "
                              f"not {_type_name(description)}")
    settings = validate_settings(data.get("parameters", {}), source)
    keys = validate_keys(data.get("keys", {}), source)
    tuning = validate_tuning(data.get("tuning", {}), source, base_dir)
    velocity = validate_velocity(data.get("velocity", {}), source)
    return Preset(name=name, settings=settings, keys=keys, description=description,
                  warnings=warnings, tuning=tuning, velocity=velocity)


# ----------------------------------------------------------------------------- locations
def user_preset_dir() -> Path:
    """Folder for the user's own presets (``platformdirs`` user data dir + ``/presets``)."""
    import platformdirs
    return Path(platformdirs.user_data_dir("pianosynth")) / "presets"


def preset_dirs() -> list[Path]:
    """Folders searched for named presets, first match wins (user, then factory)."""
    return [user_preset_dir(), FACTORY_PRESET_DIR]


def list_presets() -> dict[str, Path | None]:
    """Available named presets ``{name: path}`` (``None`` for the built-in default)."""
    found: dict[str, Path | None] = {}
    for d in reversed(preset_dirs()):          # user folder last, so it shadows the factory
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found[p.stem] = p
    found.setdefault("default", None)
    return dict(sorted(found.items()))


def default_preset() -> Preset:
    """The built-in default preset: every parameter at its table default."""
    settings = {p.name: (int(p.default) if p.integer else float(p.default)) for p in PARAMETERS}
    return Preset(name="default", settings=settings,
                  description="Every parameter at its default from the parameter table.")


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.endswith(".toml")


def _new_file_mode(target: Path) -> int:
    """Mode for a file replacing ``target``: its current mode, else 0o666 less the umask
    (``mkstemp`` creates 0o600 files, which a rename would keep)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


# ---------------------------------------------------------------------------- load / save
def load_preset(path_or_name: str | os.PathLike) -> Preset:
    """Load and validate a preset file, or a named preset from :func:`preset_dirs`.

    Parameters
    ----------
    path_or_name : str or path-like
        A path (anything with a slash or a ``.toml`` ending, or a ``Path``) or a preset name
        such as ``"default"``.

    Returns
    -------
    Preset

    Raises
    ------
    PianosynthError
        Missing file or unknown name, unreadable file, malformed TOML (with line and
        column), unknown keys, values of the wrong type or out of range, or a
        ``schema_version`` newer than :data:`SCHEMA_VERSION`.
    """
    if isinstance(path_or_name, os.PathLike) or _looks_like_path(str(path_or_name)):
        return _load_file(Path(path_or_name))
    name = str(path_or_name)
    if not _NAME_RE.match(name):
        raise PianosynthError(f"invalid preset name {name!r} (give a name like 'default' or "
                              "a path to a .toml file)")
    for d in preset_dirs():
        p = d / f"{name}.toml"
        if p.is_file():
            return _load_file(p)
    if name == "default":
        return default_preset()
    available = ", ".join(list_presets())
    raise PianosynthError(f"no preset named {name!r} (available: {available}; or give a "
                          "path to a .toml file)")


def _load_file(path: Path) -> Preset:
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise PianosynthError(f"preset file not found: {source}") from None
    except IsADirectoryError:
        raise PianosynthError(f"preset path is a folder, not a file: {source}") from None
    except tomllib.TOMLDecodeError as e:
        raise PianosynthError(f"{source}: malformed TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise PianosynthError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise PianosynthError(f"cannot read preset {source}: {e.strerror or e}") from None
    preset = preset_from_dict(data, source, default_name=path.stem, base_dir=path.parent)
    preset.path = path
    return preset


def format_preset(preset: Preset, comments: bool = True) -> str:
    """The TOML text of ``preset`` (validated first).

    With ``comments``, every parameter line carries its range, unit and meaning from the
    parameter table, grouped as in the table, so a saved preset documents itself.
    """
    settings = validate_settings(preset.settings, f"preset {preset.name!r}")
    keys = validate_keys(preset.keys, f"preset {preset.name!r}")
    tuning = validate_tuning(preset.tuning, f"preset {preset.name!r}", check_files=False)
    velocity = validate_velocity(preset.velocity, f"preset {preset.name!r}")

    def line(k, v):
        return tomli_w.dumps({k: v}).strip()

    out = []
    if comments:
        out.append("# pianosynth preset (load with: pianosynth render IN.mid --preset FILE)")
    # the lowest version that holds the content, so older builds read what they can
    version = max([2 if (tuning or velocity) else 1]
                  + [PARAM_BY_NAME[k].added for k in settings if k in PARAM_BY_NAME])
    out.append(line("schema_version", version))
    out.append(line("name", preset.name))
    if preset.description:
        out.append(line("description", preset.description))
    out += ["", "[parameters]"]
    group = None
    for p in PARAMETERS:                      # table order, then anything unknown (none)
        if p.name not in settings:
            continue
        if comments and p.group != group:
            group = p.group
            out.append(f"# {group}")
        text = line(p.name, settings[p.name])
        if comments:
            text = f"{text:<32} # {_range_text(p.min, p.max, p.unit)}: {p.doc}"
        out.append(text)
    if tuning:
        out += ["", "[tuning]"]
        notes = {"temperament": "equal, werckmeister3, vallotti, kirnberger3, "
                                "quarter_comma_meantone, just",
                 "root": "the temperament's C: a pitch class or key name",
                 "scala": ".scl file, relative to this preset",
                 "kbm": ".kbm keyboard mapping, relative to this preset",
                 "stretch": "railsback (from B), table (measured), none"}
        for name in ("temperament", "root", "scala", "kbm", "stretch"):
            if name in tuning:
                text = line(name, tuning[name])
                out.append(f"{text:<32} # {notes[name]}" if comments else text)
    if velocity:
        out += ["", "[velocity]"]
        if "curve" in velocity:
            text = line("curve", velocity["curve"])
            out.append(f"{text:<32} # {', '.join(VELOCITY_CURVES)}" if comments else text)
        else:
            if comments:
                out.append("# [MIDI velocity 1..127, hammer m/s 0.05..10], log-linear between")
            out.append(line("points", velocity["points"]))
    for key, fields in keys.items():
        out += ["", f"[keys.{key}]"]
        for name, value in fields.items():
            text = line(name, value)
            if comments:
                lo, hi, unit = KEY_OVERRIDES[name]
                text = f"{text:<32} # {_range_text(lo, hi, unit)}"
            out.append(text)
    return "\n".join(out) + "\n"


def _rebase_tuning(preset: Preset, folder: Path) -> Preset:
    """``preset`` with its relative ``[tuning]`` file paths rewritten relative to ``folder``
    (where it is about to be saved), so they still name the same files."""
    if not any(k in preset.tuning for k in ("scala", "kbm")):
        return preset
    old = preset.base_dir.resolve()
    new = folder.resolve()
    if old == new:
        return preset
    tuning = dict(preset.tuning)
    for k in ("scala", "kbm"):
        if k in tuning and not os.path.isabs(os.path.expanduser(tuning[k])):
            target = old / tuning[k]
            try:
                tuning[k] = os.path.relpath(target, new)
            except ValueError:                 # another drive (Windows)
                tuning[k] = str(target)
    return Preset(name=preset.name, settings=preset.settings, keys=preset.keys,
                  description=preset.description, path=preset.path,
                  warnings=preset.warnings, tuning=tuning, velocity=preset.velocity)


def save_preset(preset: Preset, path: str | os.PathLike, comments: bool = True) -> Path:
    """Write ``preset`` to ``path`` atomically.

    The text goes to a temporary file in the same folder, is flushed and fsync'ed, then
    renamed over ``path`` (``os.replace``), so a reader never sees a half-written preset and
    a failure leaves any old file untouched.

    Returns the path written; raises :class:`PianosynthError` on invalid content or when the
    folder is missing or not writable.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise PianosynthError(f"cannot save preset: folder {folder} does not exist")
    preset = _rebase_tuning(preset, folder)
    text = format_preset(preset, comments=comments)
    # the text must read back to the same preset (guards the formatter)
    back = preset_from_dict(tomllib.loads(text), str(path), default_name=path.stem,
                            base_dir=folder)
    assert (back.settings, back.keys, back.velocity) == (
        validate_settings(preset.settings), validate_keys(preset.keys),
        validate_velocity(preset.velocity)), "preset formatter bug"
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, _new_file_mode(path))
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise PianosynthError(f"cannot save preset {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path
