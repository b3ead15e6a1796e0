"""Start-up time of `pianosynth note C4` (not a test): warm numba cache, and cold (cache
deleted, every kernel compiled), each as a fresh process, wall clock.

Usage: python scripts/bench_startup.py [--runs 3]
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pianosynth"


def run_note(out):
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pianosynth", "note", "C4", "-o", out, "-q"],
                   check=True)
    return time.perf_counter() - t


def clear_cache():
    for f in list(PKG.rglob("*.nbi")) + list(PKG.rglob("*.nbc")):
        f.unlink()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = str(Path(d) / "c4.wav")
        run_note(out)                                   # make sure the cache is warm
        warm = [run_note(out) for _ in range(a.runs)]
        clear_cache()
        cold = run_note(out)
        again = run_note(out)
    print(f"pianosynth note C4, warm cache: median {statistics.median(warm):.2f} s "
          f"(runs {', '.join(f'{w:.2f}' for w in warm)})")
    print(f"cold (cache deleted, all kernels compiled): {cold:.1f} s; next run {again:.2f} s")


if __name__ == "__main__":
    main()
