"""Loss filter orders up to 9 (one-pole + 8 peaking cuts, Bank et al. §4.1, eq. 11): a bass
T60 list that jumps by 2x from partial to partial (as the recorded A0 does)."""
import numpy as np

from pianosynth.design.string import MAX_LOSS_CUTS, check_loss_filter, loop_group_delay
from pianosynth.engine.core import Engine

FS = 44100


def _design(order, t60):
    key = 24
    over = {key: {"loss_order": order, **{f"t60_k{k:02d}_s": t for k, t in enumerate(t60, 1)}}}
    eng = Engine({"resonators_on": 0}, sample_rate=FS, key_overrides=over)
    kp, sd = eng.keys.kp, eng.keys.strings[key]
    i = key - 21
    r = int(eng.keys.kt_i[key, 7])          # the string's rate factor (K_RATE)
    fs_s = FS / r
    k = np.arange(1, len(t60) + 1)
    fk = k * kp.f0_hz[i] * np.sqrt(1 + kp.inharmonicity_b[i] * k * k)
    design = sd.t60_s(2 * np.pi * fk / fs_s, fs_s,
                      loop_group_delay(kp.f0_hz[i], kp.inharmonicity_b[i], k, fs_s))
    return sd, design, fs_s


def test_order_9_is_stable_and_closer_than_order_5():
    assert MAX_LOSS_CUTS == 8
    t60 = [30.0, 19.0, 37.0, 16.0, 25.0, 11.2, 22.0, 12.0, 18.0, 9.0, 14.0, 8.0, 12.0, 7.0,
           10.0, 6.0]
    err = {}
    for order in (5, 9):
        sd, design, fs_s = _design(order, t60)
        assert len(sd.loss_sos) <= order - 1
        check_loss_filter(sd.loss_g, sd.loss_a1, sd.loss_sos, fs_s)   # |H| < 1, stable
        err[order] = np.abs(design / np.array(t60) - 1)
    print({o: np.round(e, 2) for o, e in err.items()})
    assert np.mean(err[9]) < np.mean(err[5])
    assert np.all(np.isfinite(err[9]))
