"""Real-time scheduling of the audio threads (pianosynth.io.priority)."""
import os
import threading

import pytest

from pianosynth.io import priority as P

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setscheduler"),
                                reason="no sched_setscheduler on this system")


def _in_thread(fn):
    """Run ``fn`` in a fresh thread (so the test process keeps its own scheduling);
    returns (fn's result, the thread's policy after it, as the kernel reports it)."""
    box = {}

    def run():
        box["result"] = fn()
        box["policy"] = os.sched_getscheduler(0)
        box["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    return box["result"], box["policy"], box["nice"]


@linux_only
def test_boost_gives_fifo_or_says_why(monkeypatch):
    monkeypatch.setenv(P.RT_ENV, "1")
    text, policy, nice = _in_thread(P.boost_current_thread)
    if policy == os.SCHED_FIFO:
        assert text == f"SCHED_FIFO {P.AUDIO_RT_PRIORITY}"
    else:       # refused: the report says so and matches what the kernel reports
        assert "not permitted" in text
        assert text.startswith(f"SCHED_OTHER nice {nice}")


@linux_only
def test_boost_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(P.RT_ENV, "0")
    before = os.sched_getscheduler(0)
    text, policy, _ = _in_thread(P.boost_current_thread)
    assert policy == before
    assert text.endswith(f"({P.RT_ENV}=0)")


@linux_only
def test_boost_leaves_a_realtime_thread_alone(monkeypatch):
    monkeypatch.setenv(P.RT_ENV, "1")

    def twice():
        first = P.boost_current_thread(priority=3)
        return first, P.boost_current_thread(priority=7)

    (first, second), policy, _ = _in_thread(twice)
    if policy != os.SCHED_FIFO:
        pytest.skip(f"real-time scheduling refused here: {first}")
    assert first == "SCHED_FIFO 3"
    assert second == "SCHED_FIFO 3 (already)"        # not lowered or raised to 7


def test_touch_pages_keeps_values_and_skips_views():
    import numpy as np
    a = np.arange(20000.0)
    P.touch_pages(a)
    assert np.array_equal(a, np.arange(20000.0))
    v = np.zeros((4, 5000))[:, ::2]          # not contiguous: left alone, no error
    P.touch_pages(v)
    r = np.ones(10000)
    r.flags.writeable = False
    P.touch_pages(r)                          # read-only: left alone, no error
    assert r.sum() == 10000.0


@pytest.mark.skipif(not hasattr(__import__("resource"), "RUSAGE_THREAD"),
                    reason="no per-thread page-fault counts on this system")
def test_engine_leaves_no_page_fault_to_the_audio_thread():
    """The first sustain-pedal press starts ~90 sympathetic strings; with delay lines still
    lazily mapped it cost 340 page faults (1.6 ms of a 5.3 ms block here, 7-16 ms in a
    loaded suite, an underflow each). A constructed engine has every page mapped."""
    import resource

    import numpy as np

    from pianosynth.engine.core import Engine
    from pianosynth.engine.events import make_events

    eng = Engine(sample_rate=48000)
    out = np.zeros((256, 2), np.float64)
    eng.render(out)
    blocks = [make_events(ev) for ev in (
        [(0, 0x90, 60, 90)], [(0, 0x90, 64, 90), (10, 0x90, 67, 100)], [(0, 0xB0, 64, 127)],
        [(0, 0x90, 21, 127), (0, 0x90, 108, 127)], [(0, 0xB0, 67, 127)], [(0, 0x80, 60, 0)],
        [], [])]
    faults = []
    for ev in blocks:
        f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        eng.render(out, ev)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0)
    assert np.isfinite(out).all()
    assert sum(faults) <= 4, faults
