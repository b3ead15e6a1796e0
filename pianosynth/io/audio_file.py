"""Audio files: WAV and FLAC through :mod:`soundfile`, written atomically.

The container comes from the file extension (``.wav``, ``.flac``); the sample format from
``subtype``: ``PCM_16``, ``PCM_24`` or ``FLOAT`` (32-bit float, WAV only: FLAC stores
integers). :func:`check_output_path` validates all of that, and that the folder exists and is
writable, *before* a long render starts. :func:`write_audio` writes to a hidden temporary
file in the target folder and renames it over the target only when complete, so a crash,
a full disk or Ctrl-C never leaves a partial file under the requested name (the temporary
file is removed).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import PianosynthError

#: extension -> soundfile container format.
FORMATS = {".wav": "WAV", ".flac": "FLAC"}
#: container -> subtypes it accepts here.
SUBTYPES = {"WAV": ("PCM_16", "PCM_24", "FLOAT"), "FLAC": ("PCM_16", "PCM_24")}
DEFAULT_SUBTYPE = "PCM_24"
#: frames written per chunk (bounds the extra memory of clipping/conversion).
_CHUNK = 1 << 16
#: WAV data larger than this goes into an RF64 container (a plain RIFF size field is 32-bit).
_WAV_LIMIT_BYTES = 0xFFFFFFFF - 1024
_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}


def _new_file_mode(target: Path) -> int:
    """Mode for a file replacing ``target``: its current mode, else 0o666 less the umask
    (``mkstemp`` creates 0o600 files, which a rename would keep)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def audio_format(path: str | os.PathLike, subtype: str | None = None) -> tuple[str, str]:
    """``(format, subtype)`` for an output path, e.g. ``("WAV", "PCM_24")``.

    Raises
    ------
    PianosynthError
        Unknown extension, unknown subtype, or a combination the container cannot hold
        (``FLOAT`` in FLAC).
    """
    ext = Path(path).suffix.lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise PianosynthError(f"cannot tell the audio format of {str(path)!r}: use a .wav or "
                              ".flac file name")
    sub = (subtype or DEFAULT_SUBTYPE).upper()
    if sub not in _BYTES:
        raise PianosynthError(f"unknown sample format {subtype!r} (choose PCM_16, PCM_24 or "
                              "FLOAT)")
    if sub not in SUBTYPES[fmt]:
        raise PianosynthError(f"{fmt} cannot store {sub} samples (choose "
                              f"{' or '.join(SUBTYPES[fmt])}, or write a .wav file)")
    return fmt, sub


def check_output_path(path: str | os.PathLike, subtype: str | None = None) -> tuple[str, str]:
    """Validate an output path before rendering: format, folder exists and is writable.

    Creates and removes a small temporary file in the target folder to prove it can be
    written (permissions, read-only mounts, quotas).

    Returns
    -------
    (format, subtype) : tuple[str, str]

    Raises
    ------
    PianosynthError
        Bad extension or subtype, missing folder, a folder in place of the file, or no
        write permission.
    """
    p = Path(path)
    if p.is_dir():
        raise PianosynthError(f"output {str(p)!r} is a folder; give a file name")
    fmt, sub = audio_format(path, subtype)
    folder = p.parent
    if not folder.exists():
        raise PianosynthError(f"cannot write {str(p)!r}: folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise PianosynthError(f"cannot write {str(p)!r}: {str(folder)!r} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{p.name}.", suffix=".check")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise PianosynthError(f"cannot write to folder {str(folder)!r}: "
                              f"{e.strerror or e}") from None
    return fmt, sub


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                subtype: str | None = None) -> int:
    """Write ``audio`` to ``path`` atomically (temporary file in the same folder + rename).

    Parameters
    ----------
    path : str or path-like
        ``.wav`` or ``.flac``.
    audio : numpy.ndarray, float32 or float64, shape (n,) or (n, channels)
        Full scale is +-1.0. For integer subtypes samples beyond +-1 are clipped (the
        count is returned); ``FLOAT`` stores them as they are.
    sample_rate : int
        Hz.
    subtype : {"PCM_16", "PCM_24", "FLOAT"}, optional
        Default ``PCM_24``.

    Returns
    -------
    int
        Number of samples clipped (0 for ``FLOAT``).

    Raises
    ------
    PianosynthError
        Invalid format, missing/unwritable folder, or an error while writing (disk full
        ...); the temporary file is removed and ``path`` is left as it was.
    """
    import soundfile as sf

    fmt, sub = check_output_path(path, subtype)
    p = Path(path)
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"audio must have shape (n,) or (n, channels), not {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    if fmt == "WAV" and a.shape[0] * a.shape[1] * _BYTES[sub] > _WAV_LIMIT_BYTES:
        fmt = "RF64"                           # > 4 GiB: same .wav name, 64-bit sizes
    clipped = 0
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
        os.close(fd)
        os.chmod(tmp, _new_file_mode(p))
        with sf.SoundFile(tmp, "w", samplerate=int(sample_rate), channels=a.shape[1],
                          subtype=sub, format=fmt) as f:
            for i in range(0, a.shape[0], _CHUNK):
                block = a[i:i + _CHUNK]
                if sub != "FLOAT":
                    over = np.abs(block) > 1.0
                    n_over = int(np.count_nonzero(over))
                    if n_over:
                        clipped += n_over
                        block = np.clip(block, -1.0, 1.0)
                f.write(block)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
        tmp = None
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise PianosynthError(f"cannot write {str(p)!r}: {getattr(e, 'strerror', None) or e}") \
            from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return clipped


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """``(audio float64 (n, channels), sample_rate)`` of a sound file; for tests and tools."""
    import soundfile as sf

    try:
        a, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise PianosynthError(f"cannot read audio file {str(path)!r}: {e}") from None
    return a, int(sr)
