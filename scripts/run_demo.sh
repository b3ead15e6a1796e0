#!/usr/bin/env bash
# Set everything up (scripts/setup_env.sh), then render the bundled demo, Schumann's
# "Traeumerei" (sequenced by Bernd Krueger, piano-midi.de, CC BY-SA 3.0 DE), with the default
# preset to demo.wav in the project folder. Extra arguments go to `pianosynth render`,
# e.g. `bash scripts/run_demo.sh --sample-rate 96000 --normalize`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh
"$ROOT/.venv/bin/pianosynth" render pianosynth/data/scn15_7.mid -o demo.wav --preset default "$@"
