#!/usr/bin/env bash
# The one command of a GPU job:  bench/gpu_suite.sh OUTDIR [--dry-run]
#
# On the GPU machine (Python 3.12 + PyTorch there, no package index): unpack the EGL/GL loader .debs brought in
# .gl/, install the wheels brought in .whl/ (make wheels-gpu fetched both) into /tmp/site, make the polytask
# namespace importable from this tree without installing it, then run bench/gpu_suite.py, which writes
# OUTDIR/gpu_suite.json and OUTDIR/rows.md and prints the rows for docs/benchmarks.md. The whole job is meant to
# end inside 9 minutes: the suite gets what is left of JOB_S (default 520 s) after the installs.
#
# --dry-run: the same suite on this CPU at toy sizes with the project's venv (nothing installed, nothing
# unpacked; the simulators and POT are hidden from Python as they are absent there). tests/test_gpu_suite.py.
set -uo pipefail
out=${1:?usage: bench/gpu_suite.sh OUTDIR [--dry-run]}
dry=0
[ "${2:-}" = "--dry-run" ] && dry=1
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
start=$(date +%s)
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
if [ "$dry" = 1 ]; then
  py=${PYTHON:-$root/.venv/bin/python}
  flags=(--dry-run --budget-s "${JOB_S:-300}")
else
  # the brought wheels, EGL and the package links (one copy, shared with bench/pixel_runs.sh)
  source "$root/bench/gpu_env.sh" || exit 3
  left=$(( ${JOB_S:-520} - ($(date +%s) - start) ))
  flags=(--budget-s "$left")
fi
echo "gpu_suite: setup took $(( $(date +%s) - start )) s; python $("$py" -c 'import sys; print(sys.version.split()[0])')"
"$py" "$root/bench/gpu_suite.py" --out "$out" "${flags[@]}" 2>&1 | tee "$out/gpu_suite.log"
status=${PIPESTATUS[0]}
echo "gpu_suite: done in $(( $(date +%s) - start )) s (exit $status); results in $out/gpu_suite.json"
exit "$status"
