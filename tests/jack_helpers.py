"""Helpers for tests and scripts that need a real JACK server (dummy backend, no sound card).

- :class:`JackServer`: starts ``jackd --no-realtime -d dummy`` and waits with ``jack_wait``.
- :class:`JackRecorder`: a JACK client written with ctypes on ``libjack.so.0`` (shipped with
  jackd2, so no extra Python package) that records audio ports into memory together with the
  JACK frame time of every cycle, and reads JACK's frame clock (``jack_frame_time``) at any
  moment. Sending MIDI at a known frame time and finding the onset in a recording stamped in
  the same clock gives an honest send-to-sound latency; see ``tests/test_live_jack.py``.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time

import numpy as np

JACK_OPTIONS_NO_START_SERVER = 0x01
JACK_PORT_IS_INPUT = 0x1
JACK_DEFAULT_AUDIO_TYPE = b"32 bit float mono audio"


def jack_missing_reason() -> str | None:
    """``None`` if jackd and its tools are installed, else what is missing."""
    for tool in ("jackd", "jack_wait", "jack_lsp"):
        if shutil.which(tool) is None:
            return (f"{tool} not installed (apt-get install --no-install-recommends jackd2)")
    try:
        ctypes.CDLL("libjack.so.0")
    except OSError:
        return "libjack.so.0 not found (apt-get install jackd2)"
    return None


def jack_running() -> bool:
    """Is a JACK server answering now (default server name)?"""
    try:
        r = subprocess.run(["jack_wait", "-c"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "running" in r.stdout and "not" not in r.stdout


def jack_ports() -> list[str]:
    r = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"jack_lsp failed: {r.stderr.strip()}")
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


class JackServer:
    """``jackd --no-realtime -d dummy -r RATE -p PERIOD`` for the duration of a ``with``.

    Parameters
    ----------
    rate : int
        Sample rate, Hz.
    period : int
        Frames per JACK cycle.
    log_path : str or None
        Where jackd's output goes (default: discarded).
    """

    def __init__(self, rate: int = 48000, period: int = 256, log_path: str | None = None):
        self.rate = rate
        self.period = period
        self.log_path = log_path
        self.proc = None

    def start(self, timeout_s: float = 10.0) -> "JackServer":
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            ["jackd", "--no-realtime", "-d", "dummy", "-r", str(self.rate), "-p",
             str(self.period)], stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        r = subprocess.run(["jack_wait", "-w", "-t", str(int(timeout_s))], capture_output=True,
                           text=True, timeout=timeout_s + 5)
        if r.returncode != 0 or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"jackd did not start: {r.stdout.strip()} {r.stderr.strip()}")
        return self

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_PROCESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p)


def _libjack():
    lib = ctypes.CDLL("libjack.so.0")
    vp, u32, cp = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p
    sig = {
        "jack_client_open": (vp, [cp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
        "jack_client_close": (ctypes.c_int, [vp]),
        "jack_port_register": (vp, [vp, cp, cp, ctypes.c_ulong, ctypes.c_ulong]),
        "jack_port_name": (cp, [vp]),
        "jack_port_get_buffer": (vp, [vp, u32]),
        "jack_set_process_callback": (ctypes.c_int, [vp, _PROCESS, vp]),
        "jack_activate": (ctypes.c_int, [vp]),
        "jack_deactivate": (ctypes.c_int, [vp]),
        "jack_connect": (ctypes.c_int, [vp, cp, cp]),
        "jack_last_frame_time": (u32, [vp]),
        "jack_frame_time": (u32, [vp]),
        "jack_get_sample_rate": (u32, [vp]),
        "jack_get_buffer_size": (u32, [vp]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib


class JackRecorder:
    """A JACK client that records ``channels`` audio inputs with their JACK frame times.

    Parameters
    ----------
    name : str
        JACK client name.
    channels : int
        Audio input ports ``in_1 .. in_N``.
    max_seconds : float
        Recording capacity, s (preallocated).

    Notes
    -----
    The process callback (Python, via ctypes, in JACK's thread) copies each cycle's buffers
    into a preallocated array while :attr:`recording` is set and stores the cycle's
    ``jack_last_frame_time``, so every recorded sample has a JACK frame time even if cycles
    were missed. ``frame_time()`` reads JACK's current frame clock from any thread: a sender
    stamps a MIDI message with it right before sending.
    """

    def __init__(self, name: str = "psrec", channels: int = 2, max_seconds: float = 60.0):
        self.lib = lib = _libjack()
        status = ctypes.c_int(0)
        self.client = lib.jack_client_open(name.encode(), JACK_OPTIONS_NO_START_SERVER,
                                           ctypes.byref(status))
        if not self.client:
            raise RuntimeError(f"jack_client_open failed (status 0x{status.value:x})")
        self.sample_rate = int(lib.jack_get_sample_rate(self.client))
        self.period = int(lib.jack_get_buffer_size(self.client))
        self.ports = []
        for i in range(channels):
            p = lib.jack_port_register(self.client, f"in_{i + 1}".encode(),
                                       JACK_DEFAULT_AUDIO_TYPE, JACK_PORT_IS_INPUT, 0)
            if not p:
                raise RuntimeError("jack_port_register failed")
            self.ports.append(p)
        self.port_names = [lib.jack_port_name(p).decode() for p in self.ports]
        n = int(max_seconds * self.sample_rate)
        self.data = np.zeros((channels, n), np.float32)
        self._addr = [self.data[c].ctypes.data for c in range(channels)]
        max_cycles = n // 16 + 16
        self.cycle_frame = np.zeros(max_cycles, np.int64)   # JACK frame time of each cycle
        self.cycle_pos = np.zeros(max_cycles, np.int64)     # its first sample in self.data
        self.cycles = 0
        self.pos = 0
        self.recording = False
        self.process_calls = 0
        self._cb = _PROCESS(self._process)          # keep a reference
        if lib.jack_set_process_callback(self.client, self._cb, None) != 0:
            raise RuntimeError("jack_set_process_callback failed")
        if lib.jack_activate(self.client) != 0:
            raise RuntimeError("jack_activate failed")

    def _process(self, nframes, arg):
        self.process_calls += 1
        if self.recording and self.pos + nframes <= self.data.shape[1] \
                and self.cycles < len(self.cycle_frame):
            lib = self.lib
            self.cycle_frame[self.cycles] = lib.jack_last_frame_time(self.client)
            self.cycle_pos[self.cycles] = self.pos
            self.cycles += 1
            for ch, port in enumerate(self.ports):
                buf = lib.jack_port_get_buffer(port, nframes)
                ctypes.memmove(self._addr[ch] + 4 * self.pos, buf, 4 * nframes)
            self.pos += nframes
        return 0

    def connect(self, sources: list[str]) -> None:
        for src, dst in zip(sources, self.port_names):
            if self.lib.jack_connect(self.client, src.encode(), dst.encode()) != 0:
                raise RuntimeError(f"jack_connect {src} -> {dst} failed")

    def frame_time(self) -> int:
        """JACK's estimate of the current frame time (``jack_frame_time``)."""
        return int(self.lib.jack_frame_time(self.client))

    def start(self) -> None:
        self.pos = 0
        self.cycles = 0
        self.recording = True

    def stop(self) -> None:
        self.recording = False
        time.sleep(3 * self.period / self.sample_rate)

    def recorded(self) -> tuple[np.ndarray, int, int]:
        """The recording on JACK's frame clock.

        Returns
        -------
        (data (channels, n) float32, frame time of sample 0, frames missing)
            Sample ``i`` of ``data`` was played at JACK frame time ``first + i``; cycles the
            client missed (xruns) are zeros and counted in ``frames missing``.
        """
        c = self.cycles
        if c == 0:
            return self.data[:, :0], 0, 0
        fr = self.cycle_frame[:c]
        rel = (fr - fr[0]) % 2**32                     # frame clock wraps at 2**32
        n_out = int(rel[-1]) + self.period
        out = np.zeros((self.data.shape[0], n_out), np.float32)
        ends = np.r_[self.cycle_pos[1:c], self.pos]
        for r, p0, p1 in zip(rel, self.cycle_pos[:c], ends):
            out[:, r:r + (p1 - p0)] = self.data[:, p0:p1]
        missing = n_out - int(self.pos)
        return out, int(fr[0]), missing

    def close(self) -> None:
        if self.client:
            self.lib.jack_deactivate(self.client)
            self.lib.jack_client_close(self.client)
            self.client = None
