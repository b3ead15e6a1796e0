"""MIDI Tuning Standard (MTS): tuning SysEx messages, decoded to (key, Hz).

Pure functions, no I/O: the live MIDI input hands each System Exclusive message to
:func:`decode_single_note_tuning` (or :func:`parse_single_note_tuning`) and applies the
result to the engine; MIDI-file rendering uses :func:`decode_tuning_message`, which also
understands the bulk tuning dump and the scale/octave tuning messages. Nothing here raises
on bad input from the wire: a message that is not a valid tuning message decodes to
``changes == []`` with a ``reason``.

Byte format
-----------
Single note tuning change (real-time), MIDI 1.0 Detailed Specification, MIDI Tuning::

    F0 7F <dev> 08 02 tt ll [kk xx yy zz] x ll F7

Single note tuning change with bank (CA-020 "MIDI Tuning Extensions"), real-time (``7F``,
retunes sounding notes) and non-real-time (``7E``, a set-up message that leaves sounding
notes alone)::

    F0 7F <dev> 08 07 bb tt ll [kk xx yy zz] x ll F7
    F0 7E <dev> 08 07 bb tt ll [kk xx yy zz] x ll F7

- ``F0`` start of SysEx, ``7F`` / ``7E`` universal real-time / non-real-time header;
- ``dev``: device ID 00..7F (``7F`` = all devices); ``08``: sub-ID#1, MIDI Tuning Standard;
  ``02`` / ``07``: sub-ID#2;
- ``bb``: tuning bank 0..127; ``tt``: tuning program 0..127; ``ll``: number of changes;
- ``kk``: MIDI key to retune 0..127;
- ``xx yy zz``: its frequency. ``xx`` is a semitone (a MIDI key number of 12-TET with key 69
  = 440 Hz) and ``yy zz`` a 14-bit fraction (``yy`` the 7 high bits) of that semitone in
  units of 100/16384 cent (0.0061 cent) above it::

      f = 440 Hz * 2^((xx + (128 yy + zz) / 16384 - 69) / 12)

  so the range is 8.1758 Hz (00 00 00) to 13289.7 Hz (7F 7F 7E). ``7F 7F 7F`` is reserved
  for "no change" and such an entry is skipped.
- ``F7`` end of SysEx.

Bulk tuning dump (non-real-time; ``08 04`` with a bank byte, CA-020)::

    F0 7E <dev> 08 01 tt <name: 16 ASCII bytes> [xx yy zz] x 128 cs F7
    F0 7E <dev> 08 04 bb tt <name: 16 ASCII bytes> [xx yy zz] x 128 cs F7

the frequencies of keys 0..127 in order, ``cs`` the checksum: XOR of every byte from ``7E``
to the last data byte, masked to 7 bits.

Scale/octave tuning (CA-020), real-time ``7F`` or non-real-time ``7E``, 1-byte and 2-byte
forms::

    F0 7x <dev> 08 08 ff gg hh [ss] x 12 F7        ss: 00..7F = -64..+63 cent (40 = 0)
    F0 7x <dev> 08 09 ff gg hh [ss tt] x 12 F7     14-bit, 2000h = 0, step 100/8192 cent

``ff gg hh`` is a MIDI channel mask (ignored: every channel plays the one piano); the 12
values, C first, are offsets from 12-TET (A4 = 440 Hz) applied to every key of that pitch
class.

A non-real-time ``08 02`` is not defined by the standard (its non-real-time single-note
form is the ``08 07`` message with a bank byte) and is refused with that reason.

Messages are accepted with or without the framing ``F0`` ... ``F7`` (rtmidi delivers it,
mido's ``Message('sysex').data`` does not).

References
----------
.. [1] MIDI Manufacturers Association, "MIDI Tuning Standard", MIDI 1.0 Detailed
   Specification 4.2 (1996), with "MIDI Tuning Extensions" CA-020 (bank and non-real-time
   single-note messages) and the "MIDI Tuning Updated Specification" (2006).
"""
from __future__ import annotations

import logging
import math
from typing import NamedTuple

__all__ = ["SingleNoteTuning", "decode_single_note_tuning", "parse_single_note_tuning",
           "encode_single_note_tuning", "mts_frequency_hz", "mts_frequency_bytes",
           "TuningMessage", "decode_tuning_message", "is_mts_message",
           "encode_bulk_dump", "encode_scale_octave",
           "ALL_DEVICES", "MTS_MIN_HZ", "MTS_MAX_HZ"]

log = logging.getLogger(__name__)

#: device ID that addresses every device
ALL_DEVICES = 0x7F
_REALTIME, _NON_REALTIME = 0x7F, 0x7E
_SUB_MTS = 0x08
_SUB_NOTE_CHANGE, _SUB_NOTE_CHANGE_BANK = 0x02, 0x07
_NO_CHANGE = (0x7F, 0x7F, 0x7F)
#: lowest and highest frequency the 3-byte MTS format represents, Hz
MTS_MIN_HZ = 440.0 * 2.0 ** ((0 - 69) / 12.0)
MTS_MAX_HZ = 440.0 * 2.0 ** ((127 + 16382 / 16384 - 69) / 12.0)


class SingleNoteTuning(NamedTuple):
    """A decoded single-note tuning change.

    Attributes
    ----------
    changes : list of (int, float)
        ``(midi_key, f_hz)`` in message order; empty when the message is refused.
    reason : str
        Why the message was refused ("" for a valid message).
    realtime : bool
        True for the real-time form (retune sounding notes too), False for non-real-time.
    device_id : int
        Target device (0x7F = all), -1 if unknown.
    bank : int
        Tuning bank (0 for the 08 02 form), -1 if unknown.
    program : int
        Tuning program 0..127, -1 if unknown.
    skipped : int
        Entries skipped as "no change" (7F 7F 7F).
    """

    changes: list
    reason: str = ""
    realtime: bool = True
    device_id: int = -1
    bank: int = -1
    program: int = -1
    skipped: int = 0

    @property
    def ok(self) -> bool:
        """True if the message was a valid single-note tuning change."""
        return not self.reason


def mts_frequency_hz(xx: int, yy: int, zz: int) -> float | None:
    """Frequency of MTS frequency data ``xx yy zz``, Hz (None for the reserved 7F 7F 7F).

    Parameters
    ----------
    xx, yy, zz : int
        Data bytes 0..127: semitone (12-TET key, 69 = A4 = 440 Hz) and the 14-bit fraction.

    Returns
    -------
    float or None
        f = 440 * 2^((xx + (128 yy + zz) / 16384 - 69) / 12) Hz.

    Examples
    --------
    >>> mts_frequency_hz(0x45, 0, 0)
    440.0
    >>> round(mts_frequency_hz(0x45, 0x40, 0), 3)   # A4 + 50 cents
    452.893
    """
    if (xx, yy, zz) == _NO_CHANGE:
        return None
    semitones = xx + ((yy << 7) | zz) / 16384.0
    return 440.0 * 2.0 ** ((semitones - 69.0) / 12.0)


def mts_frequency_bytes(f_hz: float) -> tuple[int, int, int]:
    """MTS frequency data ``(xx, yy, zz)`` nearest to ``f_hz`` (error <= 0.0031 cent).

    Parameters
    ----------
    f_hz : float
        Frequency in Hz, :data:`MTS_MIN_HZ` (8.18) .. :data:`MTS_MAX_HZ` (13289.7).

    Returns
    -------
    (int, int, int)

    Raises
    ------
    ValueError
        If ``f_hz`` is outside the representable range or not finite.

    Examples
    --------
    >>> mts_frequency_bytes(440.0)
    (69, 0, 0)
    """
    f = float(f_hz)
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"frequency must be a positive number, got {f_hz!r}")
    steps = round((69.0 + 12.0 * math.log2(f / 440.0)) * 16384.0)
    if not 0 <= steps <= 127 * 16384 + 16382:
        raise ValueError(f"{f:.4f} Hz is outside the MTS range {MTS_MIN_HZ:.4f}.."
                         f"{MTS_MAX_HZ:.4f} Hz")
    xx, frac = divmod(steps, 16384)
    return xx, frac >> 7, frac & 0x7F


def _refuse(reason, **kw) -> SingleNoteTuning:
    return SingleNoteTuning([], reason, **kw)


def decode_single_note_tuning(message, device_id: int | None = None) -> SingleNoteTuning:
    """Decode an MTS single-note tuning change; never raises.

    Parameters
    ----------
    message : bytes, bytearray or sequence of int
        The SysEx message, with or without the framing F0 ... F7.
    device_id : int, optional
        This receiver's device ID (0..127). If given, messages addressed to another device
        (and not to 0x7F, all devices) are refused. Default: accept every device ID.

    Returns
    -------
    SingleNoteTuning
        ``changes`` is the list of (key, f_hz); ``reason`` says why it is empty when the
        message is not a valid single-note tuning change (other SysEx, wrong length, a data
        byte >= 0x80, a count that does not match, another device ...).

    Examples
    --------
    >>> decode_single_note_tuning(bytes.fromhex("F07F7F0802000145454000F7")).changes
    [(69, 452.8929841231365)]
    """
    try:
        d = [int(b) for b in message]
    except (TypeError, ValueError):
        return _refuse("not a byte sequence")
    if d and d[0] == 0xF0:
        if d[-1] != 0xF7:
            return _refuse("SysEx does not end with F7")
        d = d[1:-1]
    elif d and d[-1] == 0xF7:
        d = d[:-1]
    if any(not 0 <= b <= 0x7F for b in d):
        bad = next(b for b in d if not 0 <= b <= 0x7F)
        return _refuse(f"byte {bad:#04x} inside the message is not a 7-bit data byte")
    if len(d) < 4:
        return _refuse("too short for an MTS message")
    header, dev, sub1, sub2 = d[:4]
    if header not in (_REALTIME, _NON_REALTIME):
        return _refuse(f"not a universal SysEx (header {header:#04x}, want 0x7e or 0x7f)")
    if sub1 != _SUB_MTS:
        return _refuse(f"not a MIDI Tuning Standard message (sub-ID#1 {sub1:#04x}, want 0x08)")
    realtime = header == _REALTIME
    kw = {"realtime": realtime, "device_id": dev}
    if sub2 == _SUB_NOTE_CHANGE:
        if not realtime:
            return _refuse("08 02 (single note tuning change) is real-time only; the "
                           "non-real-time form is 08 07 with a bank byte", **kw)
        bank, off = 0, 4
    elif sub2 == _SUB_NOTE_CHANGE_BANK:
        if len(d) < 5:
            return _refuse("too short for a single note tuning change (bank)", **kw)
        bank, off = d[4], 5
    else:
        return _refuse(f"MTS sub-ID#2 {sub2:#04x} is not a single note tuning change "
                       "(02 or 07)", **kw)
    kw["bank"] = bank
    if device_id is not None and dev not in (ALL_DEVICES, int(device_id)):
        return _refuse(f"addressed to device {dev}, this is device {int(device_id)}", **kw)
    if len(d) < off + 2:
        return _refuse("message ends before the program and count bytes", **kw)
    program, count = d[off], d[off + 1]
    kw["program"] = program
    body = d[off + 2:]
    if len(body) != 4 * count:
        return _refuse(f"count byte says {count} changes ({4 * count} bytes) but "
                       f"{len(body)} bytes follow", **kw)
    changes, skipped = [], 0
    for i in range(count):
        kk, xx, yy, zz = body[4 * i:4 * i + 4]
        f = mts_frequency_hz(xx, yy, zz)
        if f is None:
            skipped += 1
            continue
        changes.append((kk, f))
    return SingleNoteTuning(changes, "", skipped=skipped, **kw)


def parse_single_note_tuning(message, device_id: int | None = None) -> list | None:
    """``[(key, f_hz), ...]`` of an MTS single-note tuning change, or None if invalid.

    The reason for a None is logged at DEBUG level (logger ``pianosynth.io.mts``); use
    :func:`decode_single_note_tuning` to get it, the bank, program and real-time flag.
    """
    r = decode_single_note_tuning(message, device_id)
    if r.reason:
        log.debug("MTS message ignored: %s", r.reason)
        return None
    return r.changes


def encode_single_note_tuning(changes, program: int = 0, device_id: int = ALL_DEVICES,
                              bank: int | None = None, realtime: bool = True) -> bytes:
    """Build an MTS single-note tuning change (the inverse of the decoder).

    Parameters
    ----------
    changes : iterable of (int, float)
        ``(midi_key 0..127, f_hz)``; at most 127 per message.
    program : int
        Tuning program 0..127.
    device_id : int
        Target device 0..127 (0x7F = all).
    bank : int, optional
        Tuning bank 0..127: then the 08 07 form is written; None writes 08 02.
    realtime : bool
        False writes the non-real-time header 7E (needs ``bank``: only 08 07 has that form).

    Returns
    -------
    bytes
        F0 ... F7.

    Raises
    ------
    ValueError
        On values out of range.
    """
    changes = list(changes)
    if len(changes) > 127:
        raise ValueError(f"at most 127 changes per message, got {len(changes)}")
    for name, v in (("program", program), ("device_id", device_id)):
        if not 0 <= int(v) <= 127:
            raise ValueError(f"{name} must be 0..127, got {v}")
    if bank is None and not realtime:
        raise ValueError("the non-real-time single note tuning change needs a bank (08 07)")
    out = [0xF0, _REALTIME if realtime else _NON_REALTIME, int(device_id), _SUB_MTS]
    if bank is None:
        out.append(_SUB_NOTE_CHANGE)
    else:
        if not 0 <= int(bank) <= 127:
            raise ValueError(f"bank must be 0..127, got {bank}")
        out += [_SUB_NOTE_CHANGE_BANK, int(bank)]
    out += [int(program), len(changes)]
    for key, f in changes:
        if not 0 <= int(key) <= 127:
            raise ValueError(f"key must be 0..127, got {key}")
        out += [int(key), *mts_frequency_bytes(f)]
    out.append(0xF7)
    return bytes(out)


# ------------------------------------------------------------------ every tuning message
_SUB_BULK_DUMP, _SUB_BULK_DUMP_BANK = 0x01, 0x04
_SUB_SCALE_1BYTE, _SUB_SCALE_2BYTE = 0x08, 0x09
_NAME_LEN = 16


class TuningMessage(NamedTuple):
    """A decoded MTS message that retunes keys (any of the forms in the module doc).

    Attributes
    ----------
    changes : list of (int, float)
        ``(midi_key 0..127, f_hz)``; empty when the message is refused.
    reason : str
        Why the message was refused ("" for a valid one).
    kind : str
        "single_note", "bulk_dump" or "scale_octave" ("" if unknown).
    realtime : bool
        True for the real-time header 7F.
    device_id, bank, program : int
        As in :class:`SingleNoteTuning` (-1 where the form has none).
    name : str
        The tuning's name (bulk dump only).
    """

    changes: list
    reason: str = ""
    kind: str = ""
    realtime: bool = True
    device_id: int = -1
    bank: int = -1
    program: int = -1
    name: str = ""

    @property
    def ok(self) -> bool:
        """True if the message was a valid tuning message."""
        return not self.reason


def _data_bytes(message):
    """Bytes without the F0/F7 framing, or a reason string."""
    try:
        d = [int(b) for b in message]
    except (TypeError, ValueError):
        return "not a byte sequence"
    if d and d[0] == 0xF0:
        if d[-1] != 0xF7:
            return "SysEx does not end with F7"
        d = d[1:-1]
    elif d and d[-1] == 0xF7:
        d = d[:-1]
    bad = next((b for b in d if not 0 <= b <= 0x7F), None)
    if bad is not None:
        return f"byte {bad:#04x} inside the message is not a 7-bit data byte"
    return d


def is_mts_message(message) -> bool:
    """True if ``message`` is a universal SysEx with sub-ID#1 08 (MIDI Tuning Standard),
    valid or not; other SysEx (GM/GS/XG resets, manufacturer messages) gives False."""
    try:
        d = [int(b) for b in message]
    except (TypeError, ValueError):
        return False
    if d and d[0] == 0xF0:
        d = d[1:]
    return len(d) >= 3 and d[0] in (_REALTIME, _NON_REALTIME) and d[2] == _SUB_MTS


def decode_tuning_message(message, device_id: int | None = None) -> TuningMessage:
    """Decode any MTS message that retunes keys; never raises.

    Parameters
    ----------
    message : bytes, bytearray or sequence of int
        The SysEx message, with or without the framing F0 ... F7 (mido's
        ``Message('sysex').data`` has none).
    device_id : int, optional
        This receiver's device ID; messages for another device (not 0x7F) are refused.
        Default: accept every device ID.

    Returns
    -------
    TuningMessage
        ``changes`` as ``(key, f_hz)``: single-note changes (08 02, 08 07), all 128 keys of a
        bulk dump (08 01, 08 04; entries 7F 7F 7F skipped), or every key of the retuned pitch
        classes of a scale/octave message (08 08, 08 09; f = 440 Hz 2^((key - 69) / 12 +
        offset / 1200)). Tuning programs and banks are not kept: every message applies at
        once (as if its program were selected).

    Examples
    --------
    >>> m = decode_tuning_message(encode_scale_octave([0.0] * 9 + [25.0] + [0.0] * 2))
    >>> m.kind, dict(m.changes)[69] == 440.0 * 2 ** (25 / 1200)
    ('scale_octave', True)
    """
    d = _data_bytes(message)
    if isinstance(d, str):
        return TuningMessage([], d)
    if len(d) < 4:
        return TuningMessage([], "too short for an MTS message")
    header, dev, sub1, sub2 = d[:4]
    if header not in (_REALTIME, _NON_REALTIME) or sub1 != _SUB_MTS:
        r = decode_single_note_tuning(message, device_id)     # gives the precise reason
        return TuningMessage([], r.reason or "not a MIDI Tuning Standard message")
    realtime = header == _REALTIME
    kw = {"realtime": realtime, "device_id": dev}
    if device_id is not None and dev not in (ALL_DEVICES, int(device_id)):
        return TuningMessage([], f"addressed to device {dev}, this is device "
                                 f"{int(device_id)}", **kw)
    if sub2 in (_SUB_NOTE_CHANGE, _SUB_NOTE_CHANGE_BANK):
        r = decode_single_note_tuning(message, device_id)
        return TuningMessage(r.changes, r.reason, "single_note", realtime, dev, r.bank,
                             r.program)
    if sub2 in (_SUB_BULK_DUMP, _SUB_BULK_DUMP_BANK):
        kw["kind"] = "bulk_dump"
        if realtime:
            return TuningMessage([], "the bulk tuning dump is a non-real-time message (7E)",
                                 **kw)
        off = 4
        if sub2 == _SUB_BULK_DUMP_BANK:
            if len(d) < 5:
                return TuningMessage([], "too short for a bulk tuning dump (bank)", **kw)
            kw["bank"], off = d[4], 5
        else:
            kw["bank"] = 0
        want = off + 1 + _NAME_LEN + 3 * 128 + 1
        if len(d) != want:
            return TuningMessage([], f"a bulk tuning dump has {want} data bytes, this one "
                                     f"{len(d)}", **kw)
        kw["program"] = d[off]
        kw["name"] = bytes(d[off + 1:off + 1 + _NAME_LEN]).decode("ascii").rstrip()
        cs = 0
        for b in d[:-1]:
            cs ^= b
        if (cs & 0x7F) != d[-1]:
            return TuningMessage([], f"bulk tuning dump checksum {d[-1]:#04x} does not "
                                     f"match the data ({cs & 0x7F:#04x})", **kw)
        data = d[off + 1 + _NAME_LEN:-1]
        changes = []
        for key in range(128):
            f = mts_frequency_hz(*data[3 * key:3 * key + 3])
            if f is not None:
                changes.append((key, f))
        return TuningMessage(changes, "", **kw)
    if sub2 in (_SUB_SCALE_1BYTE, _SUB_SCALE_2BYTE):
        kw["kind"] = "scale_octave"
        width = 1 if sub2 == _SUB_SCALE_1BYTE else 2
        want = 4 + 3 + 12 * width
        if len(d) != want:
            return TuningMessage([], f"a scale/octave tuning ({width}-byte form) has {want} "
                                     f"data bytes, this one {len(d)}", **kw)
        vals = d[7:]
        if width == 1:
            offs = [v - 0x40 for v in vals]
        else:
            offs = [(((vals[2 * i] << 7) | vals[2 * i + 1]) - 0x2000) * 100.0 / 8192.0
                    for i in range(12)]
        changes = [(key, 440.0 * 2.0 ** ((key - 69) / 12.0 + offs[key % 12] / 1200.0))
                   for key in range(128)]
        return TuningMessage(changes, "", **kw)
    return TuningMessage([], f"MTS sub-ID#2 {sub2:#04x} does not retune keys (supported: "
                             "02, 07 single note; 01, 04 bulk dump; 08, 09 scale/octave)",
                         **kw)


def encode_bulk_dump(f_hz, program: int = 0, name: str = "", device_id: int = ALL_DEVICES,
                     bank: int | None = None) -> bytes:
    """Build a bulk tuning dump (08 01, or 08 04 with ``bank``), non-real-time.

    Parameters
    ----------
    f_hz : dict[int, float] or sequence of 128 floats
        Frequency (Hz) of each key 0..127; keys missing from a dict are sent as "no change".
    program, device_id, bank : int
        0..127.
    name : str
        ASCII name, at most 16 characters (padded with spaces).

    Returns
    -------
    bytes
        F0 ... F7 with the checksum.
    """
    table = dict(f_hz) if isinstance(f_hz, dict) else dict(enumerate(f_hz))
    text = name.encode("ascii")
    if len(text) > _NAME_LEN:
        raise ValueError(f"name is longer than {_NAME_LEN} characters")
    body = [_NON_REALTIME, int(device_id), _SUB_MTS]
    body += [_SUB_BULK_DUMP] if bank is None else [_SUB_BULK_DUMP_BANK, int(bank)]
    body += [int(program)] + list(text.ljust(_NAME_LEN, b" "))
    for key in range(128):
        body += list(mts_frequency_bytes(table[key])) if key in table else list(_NO_CHANGE)
    cs = 0
    for b in body:
        cs ^= b
    return bytes([0xF0] + body + [cs & 0x7F, 0xF7])


def encode_scale_octave(cents, two_byte: bool = True, realtime: bool = True,
                        device_id: int = ALL_DEVICES) -> bytes:
    """Build a scale/octave tuning message (08 09, or 08 08 with ``two_byte=False``).

    Parameters
    ----------
    cents : sequence of 12 floats
        Offsets from 12-TET of C, C#, ... B, cents: -100..+99.98 (2-byte, step 0.0122 cent)
        or -64..+63 (1-byte, whole cents).

    Returns
    -------
    bytes
        F0 ... F7, for all 16 channels.
    """
    cents = [float(c) for c in cents]
    if len(cents) != 12:
        raise ValueError("give 12 offsets, C to B")
    out = [0xF0, _REALTIME if realtime else _NON_REALTIME, int(device_id), _SUB_MTS,
           _SUB_SCALE_2BYTE if two_byte else _SUB_SCALE_1BYTE, 0x03, 0x7F, 0x7F]
    for c in cents:
        if two_byte:
            v = round(c * 8192.0 / 100.0) + 0x2000
            if not 0 <= v <= 0x3FFF:
                raise ValueError(f"offset {c} cent is outside -100..+99.98")
            out += [v >> 7, v & 0x7F]
        else:
            v = round(c) + 0x40
            if not 0 <= v <= 0x7F:
                raise ValueError(f"offset {c} cent is outside -64..+63")
            out.append(v)
    out.append(0xF7)
    return bytes(out)
