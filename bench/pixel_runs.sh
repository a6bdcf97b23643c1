#!/usr/bin/env bash
# The one command of a pixel GPU job:  bench/pixel_runs.sh OUTDIR RUN [RUN...] [-- extra pixel_runs.py flags]
#
# RUN: experts (run 1), ot (run 2), table1 (run 3), distil (run 4; needs run 1 in the same job), cpu-curve
# (run 5, this CPU). On the GPU machine: install the brought wheels and EGL libraries (bench/gpu_env.sh), then
# bench/pixel_runs.py with what is left of JOB_S (default 520 s, so the job ends inside 9 minutes). OUTDIR gets
# pixel_runs.json, rows.md (the docs rows, also printed last), pixel_runs.log and, when they fit, the experts'
# policy checkpoints (experts.tar); stores, replay and run folders stay in WORK (default /tmp/pixel-work).
#
# --toy (first flag after OUTDIR): the same runs at toy sizes on this CPU with the project's venv, nothing
# installed, and what the GPU machine lacks besides the brought wheels hidden from Python (tests/test_pixel_runs.py).
set -uo pipefail
out=${1:?usage: bench/pixel_runs.sh OUTDIR [--toy] RUN [RUN...] [-- flags]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
start=$(date +%s)
if [ "${1:-}" = "--toy" ]; then
  shift
  py=${PYTHON:-$root/.venv/bin/python}
  export PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-egl} PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-egl}
  export POLYTASK_HIDE_MODULES=dm_control,ot,gymnasium_robotics,rclpy  # absent on the GPU machine
  flags=(--profile toy --budget-s "${JOB_S:-300}")
else
  # shellcheck source=bench/gpu_env.sh
  source "$root/bench/gpu_env.sh" || exit 3
  flags=(--profile gpu --budget-s "$(( ${JOB_S:-520} - ($(date +%s) - start) ))")
fi
runs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do runs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
echo "pixel_runs: setup took $(( $(date +%s) - start )) s; python $("$py" -c 'import sys; print(sys.version.split()[0])')"
"$py" "$root/bench/pixel_runs.py" "${runs[@]}" --out "$out" "${flags[@]}" "$@" 2>&1 | tee "$out/pixel_runs.log"
status=${PIPESTATUS[0]}
echo "pixel_runs: done in $(( $(date +%s) - start )) s (exit $status); results in $out/pixel_runs.json"
exit "$status"
