#!/usr/bin/env bash
# The GPU script: everything wmrl measures on a GPU, in one command of at most 5 minutes.
#
#   bash benchmarks/gpu.sh --wheels WHEELS           # a lent GPU machine; results in $OUT
#   bash benchmarks/gpu.sh --dry --out /tmp/gpudry   # every stage on the CPU, tiny, < 60 s
#
# The stages are Python (benchmarks/gpu.py, whose docstring says what each measures);
# this wrapper only finds a Python and puts the checkout on its path, since a GPU
# machine gets the repository as files, not installed. PYTHON picks the interpreter.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$here/gpu.py" "$@"
