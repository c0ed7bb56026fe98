# Sourced by the GPU scripts (tools/gpu_bench.sh, tools/gpu_results.sh): makes a bare JAX
# image able to run this project, and records what it runs on.
#
# The image is assumed to hold jax, flax, optax, orbax-checkpoint, numpy, PyYAML, Pillow,
# matplotlib and scikit-learn but no TensorFlow and no ml-collections: ml-collections and
# absl-py are unpacked from the wheels in tools/wheels/ (no pip, no internet). Sets PY
# (the interpreter) and writes "$1/environment.txt".

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || PY=python
export TF_CPP_MIN_LOG_LEVEL=2
# A rerun on the same machine reuses compiled steps (compile figures then show cache loads).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/backmix_jax_cache}

# A pure-Python wheel is a zip of the package: unpacking it onto PYTHONPATH needs no pip,
# no index and no write access to the image's site-packages.
WHEEL_DIR=${BENCH_WHEEL_DIR:-/tmp/backmix_wheels}
install_from_wheel() {  # module, wheel glob
  if ! "$PY" -c "import $1" 2>/dev/null; then
    echo "unpacking $2 into $WHEEL_DIR (no $1 in this image)"
    for whl in $2; do "$PY" -m zipfile -e "$whl" "$WHEEL_DIR" || exit 1; done
    export PYTHONPATH="$WHEEL_DIR${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import $1" || { echo "error: $1 still not importable"; exit 1; }
  fi
}
install_from_wheel absl "tools/wheels/absl_py-*.whl"
install_from_wheel ml_collections "tools/wheels/ml_collections-*.whl"
"$PY" -c "import yaml" 2>/dev/null || { echo "error: PyYAML (needed by ml-collections) is missing"; exit 1; }

mkdir -p "$1"
"$PY" - <<'PYEOF' | tee "$1/environment.txt"
import jax, flax, optax, numpy
print("jax", jax.__version__, "| flax", flax.__version__, "| optax", optax.__version__,
      "| numpy", numpy.__version__)
print("devices", jax.devices())
PYEOF
command -v nvidia-smi >/dev/null && nvidia-smi >> "$1/environment.txt" 2>&1
true
