"""On-disk cache of designed coefficients (key tables, soundboard, interpolators).

Designing the 88 strings (least-squares dispersion filters) and the soundboard takes one to
two seconds and imports scipy.signal; a warm start loads the pickled result instead. The
cache key is the function, its arguments and a hash of every design source file, so a code
change or another setting never reads a stale design. Any cache problem (read-only home,
corrupt file) falls back to designing; writes are atomic.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from functools import lru_cache
from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]
# blockloop.py defines the key-table column layout the designs are written in
_SOURCES = sorted((_PKG / "design").glob("*.py")) + [_PKG / "engine" / "core.py",
                                                      _PKG / "engine" / "params.py",
                                                      _PKG / "engine" / "blockloop.py"]


def _sources_hash() -> str:
    h = hashlib.sha256()
    for f in _SOURCES:
        try:
            h.update(f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:16]


#: hashed at import, together with the code this process actually runs (a later edit of a
#: design file must not store old designs under the new hash)
_HASH = _sources_hash()


@lru_cache(maxsize=1)
def cache_dir() -> Path | None:
    if os.environ.get("PIANOSYNTH_NO_DESIGN_CACHE"):
        return None
    try:
        import platformdirs
        d = Path(platformdirs.user_cache_dir("pianosynth")) / "designs"
        d.mkdir(parents=True, exist_ok=True)
        return d
    except Exception:  # noqa: BLE001 -- no usable cache folder: design every time
        return None


def _freeze(x):
    if isinstance(x, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, float):
        return float.hex(x)
    return repr(x)


#: designs kept on disk (about 120 kB each); the least recently written go first
MAX_FILES = 200


def _prune(d: Path) -> None:
    files = sorted(d.glob("*.pkl"), key=lambda f: f.stat().st_mtime)
    for f in files[:max(0, len(files) - MAX_FILES)]:
        f.unlink(missing_ok=True)


def cached_call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, from the disk cache when the same call was made before."""
    d = cache_dir()
    if d is None:
        return fn(*args, **kwargs)
    key = hashlib.sha256(repr((fn.__module__, fn.__qualname__, _freeze(args),
                               _freeze(kwargs), _HASH)).encode()).hexdigest()[:32]
    path = d / f"{fn.__name__}-{key}.pkl"
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception:  # noqa: BLE001 -- missing or unreadable: design it
        pass
    obj = fn(*args, **kwargs)
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        _prune(d)
    except Exception:  # noqa: BLE001 -- cache is an optimisation only
        try:
            os.unlink(tmp)
        except Exception:  # noqa: BLE001
            pass
    return obj
