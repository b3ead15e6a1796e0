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
