#!/usr/bin/env bash
# The GPU check, in one command: the CUDA tests, then `lstmlab bench --device cuda`.
#
#   OUT=results bash benchmarks/cuda_check.sh
#
# Writes into "${OUT:-.}": cuda_check.log (everything printed) and bench-cuda.json (the
# numbers, rewritten after every row, so a run stopped at its time limit keeps what it
# measured). Goes on to the bench when a test fails; exits non-zero at the end if any
# step failed. Sized for about 9 minutes on one H100; the limits are variables:
# TEST_TIMEOUT, BENCH_TIMEOUT (seconds), BENCH_ARGS (extra flags, e.g. --quick), PYTHON.
set -uo pipefail

OUT="$(mkdir -p "${OUT:-.}" && cd "${OUT:-.}" && pwd)"
cd "$(dirname "$0")/.." || exit 1
exec > >(tee -a "$OUT/cuda_check.log") 2>&1

PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
TEST_TIMEOUT="${TEST_TIMEOUT:-210}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-300}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # compiled kernels on the GPU, not the interpreter
failed=()

echo "== $(date -u +%FT%TZ) lstmlab $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi -L || failed+=("nvidia-smi")

# torch is on the machine; install what else is missing (triton, the test tools), briefly
for pair in triton:'triton>=3.0' pytest:pytest pytest_timeout:pytest-timeout numpy:numpy; do
    module="${pair%%:*}" requirement="${pair#*:}"
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
        echo "== installing $requirement"
        timeout 120 "$PYTHON" -m pip install -q "$requirement" || echo "   could not install $requirement"
    fi
done
"$PYTHON" - <<'EOF' || failed+=("versions")
import sys
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, GPU: {torch.cuda.is_available() and torch.cuda.get_device_name()}")
try:
    import triton
    print(f"triton {triton.__version__}")
except Exception as error:
    print(f"triton cannot be imported: {error}")
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device")
EOF

echo "== tests (CUDA parametrisations), limit ${TEST_TIMEOUT}s"
# -W: without pytest-timeout, pyproject's `timeout` option would be an error under filterwarnings=error
timeout -s INT -k 15 "$TEST_TIMEOUT" "$PYTHON" -m pytest -q -rs -p no:cacheprovider -W ignore::pytest.PytestConfigWarning \
    -k cuda tests/ || failed+=("tests")

echo "== lstmlab bench --device cuda, limit ${BENCH_TIMEOUT}s"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
timeout -s INT -k 15 "$BENCH_TIMEOUT" "$PYTHON" -m lstmlab bench --device cuda --dtype both --repeats 5 \
    --json-out "$OUT/bench-cuda.json" ${BENCH_ARGS:-} || failed+=("bench")

echo "== $(date -u +%FT%TZ) done; results in $OUT (bench-cuda.json, cuda_check.log)"
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
