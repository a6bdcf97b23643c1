# Sourced by a GPU job's wrapper (bench/gpu_suite.sh, bench/pixel_runs.sh): make this tree runnable on the GPU machine.
#
# That machine has Python 3.12 + PyTorch (and numpy, OpenCV, matplotlib, tqdm, PyYAML, safetensors) but no
# simulators and no package index. `make wheels-gpu` fetched here what it lacks: the Meta-World wheels into .whl/
# and the GL loader .debs (EGL) into .gl/; a job carries both beside the tree. This file unpacks the .debs,
# installs the wheels into /tmp/site (nothing system-wide), points EGL at the NVIDIA vendor file, and links the
# polytask namespace (setup.py maps learning/, sim/, launch/ and ros2_ws/* into one package) under /tmp so the
# tree imports without an install. Sets `py` (the interpreter) and exports PYTHONPATH, MUJOCO_GL, PYOPENGL_PLATFORM.
# Needs `root` (the tree). Returns 3 when the brought wheels do not install.
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
if compgen -G "$root/.gl/*.deb" >/dev/null; then
  for f in "$root"/.gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
if compgen -G "$root/.whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$root"/.whl/*.whl || { echo "gpu_env: installing the brought wheels failed" >&2; return 3; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
src=/tmp/polytask-src
rm -rf "$src" && mkdir -p "$src/polytask"
for f in "$root"/ros2_ws/*; do ln -s "$f" "$src/polytask/"; done
for d in learning sim launch; do ln -s "$root/$d" "$src/polytask/$d"; done
export PYTHONPATH=$src${PYTHONPATH:+:$PYTHONPATH}
