#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run, each step under its own time limit:
#
#     bash tools/gpu_check.sh [STEP ...]     # default: all steps, in this order
#
# Steps: info (GPU, driver, versions; every kernel compiled for each (value, index) type pair),
# tests (python -m pytest -m gpu), train (python train_lung.py --device gpu, the default demo, then one
# more epoch resumed on the CPU from its checkpoint), bench (python bench/gpu.py against PyTorch+cuDNN,
# TF32 off on both sides), profile (where a SegNetSmall step's GPU time goes), watch (the three-way gradient
# check with its CPU-vs-GPU column, --inspect's overhead and a --inspect run on the GPU), sanitizer
# (compute-sanitizer memcheck over the kernel tests). Each step's log is written to $OUT/<step>.txt
# (OUT defaults to ./gpu-check) as it runs, and one line per step to $OUT/summary.txt.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1 MPLBACKEND=Agg MINIDL_REQUIRE_GPU=1 MINIDL_REQUIRE_TORCH=1
export RUN_DIR=$(mktemp -d)/run

run_step() {  # name, seconds, command...
    local name=$1 limit=$2 begin rc
    shift 2
    begin=$(date +%s)
    echo "== $name (limit ${limit} s)"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    rc=$?
    echo "$name: exit $rc in $(($(date +%s) - begin)) s" | tee -a "$OUT/summary.txt"
    tail -n 4 "$OUT/$name.txt"
}

step_info() {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python -c '
import re, cupy, numpy, torch, minidl
from minidl import kernels
print("CuPy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
      "torch", torch.__version__, "cuDNN", torch.backends.cudnn.version(), "numpy", numpy.__version__)
for value in (numpy.float32, numpy.float64):
    for index in (numpy.int32, numpy.int64):
        module = kernels.compiled_module(numpy.dtype(value), numpy.dtype(index))
        names = re.findall(r"__global__ void (\w+)", kernels.SOURCE)
        functions = [module.get_function(name) for name in names]
        print("compiled", numpy.dtype(value).name, numpy.dtype(index).name, ":", ", ".join(names))
'
}

step_tests() {
    python -m pytest -m gpu -q -rfEs -p no:cacheprovider
}

step_train() {
    /usr/bin/time -v python train_lung.py --device gpu --quiet --out "$RUN_DIR" 2>&1 |
        grep -v -E "^\s+(Average|Exit|Socket|Signals|Swaps|File system|Page size|Voluntary|Involuntary|Minor|Major|Percent|System time|User time)"
    cat "$RUN_DIR/history.csv"
    echo "== resumed on the CPU for one more epoch"
    python train_lung.py --resume "$RUN_DIR" --epochs 11 --device cpu --quiet
}

step_bench() {
    python bench/gpu.py --repeats 10
}

step_profile() {
    python -m bench.profile_step SegNetSmall 32x1x256x256 --device gpu --steps 5
}

step_watch() {
    python -m minidl.gradcheck --all
    python -m bench.inspect_overhead --device gpu --rounds 10
    python -m bench.inspect_overhead --device gpu --batch 32 --size 256 --rounds 6
    python train_lung.py --device gpu --inspect --epochs 2 --synthetic-count 60 --quiet --out "$RUN_DIR-inspect"
    head -3 "$RUN_DIR-inspect/layer_stats.csv"
}

step_sanitizer() {
    compute-sanitizer --tool memcheck --error-exitcode 9 \
        python -m pytest -q -p no:cacheprovider tests/test_gpu.py -k "kernel"
}

STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(info tests train bench profile watch sanitizer)
declare -A LIMITS=([info]=45 [tests]=150 [train]=90 [bench]=120 [profile]=45 [watch]=120 [sanitizer]=45)
for step in "${STEPS[@]}"; do
    run_step "$step" "${LIMITS[$step]}" bash -c "$(declare -f step_$step); step_$step"
done
