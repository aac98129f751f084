#!/usr/bin/env bash
# `make test-arm64`: fakedet's runtime on linux/aarch64 (Jetson's CPU architecture), emulated.
# A Debian arm64 root (scripts/arm64_root.sh, cached in .arm64-root/) gets the wheel built
# from this checkout with its runtime dependencies only (never torch), and runs there:
# the runtime's torch-free tests, `fakedet info` / `fakedet predict` on a package made here
# on x86, and scripts/arm64_check.py (FP32 equal to x86 within 1e-5, INT8 kernels equal to
# the exact quantization arithmetic, INT8 within the guard's budget of FP32).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(realpath -m "${ARM64_ROOT:-.arm64-root}")
PY=${PYTHON:-.venv/bin/python}
TESTS=${ARM64_TESTS:-tests/runtime/test_detector.py tests/runtime/test_selection.py tests/runtime/test_ort_backend.py tests/runtime/test_int8_cpu_tiers.py}
t0=$(date +%s)
step() { echo "== test-arm64 [$(( $(date +%s) - t0 ))s] $*"; }

step "arm64 root in $ROOT"
scripts/arm64_root.sh "$ROOT"
trap 'scripts/arm64_root.sh "$ROOT" --umount' EXIT
W=$ROOT/opt/fakedet
rm -rf "$W/work" "$W/wheels"
mkdir -p "$W/work" "$W/wheels"

step "wheel of this checkout, and a package made on x86 (export + calibrate)"
$PY -m pip wheel -q --no-deps -w "$W/wheels" .
$PY scripts/arm64_check.py make "$W/work/check"
cp -r scripts/arm64_check.py tests pyproject.toml "$W/work/"

# Inside: a clean environment (the host's SSL/pip variables name paths that do not exist
# there); pip trusts the host's CA bundle, copied in by arm64_root.sh.
CA=/etc/ssl/certs/host-ca.crt
CHROOT=$(command -v chroot)
in_root() {
    env -i PATH=/opt/fakedet/venv/bin:/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 OMP_NUM_THREADS=2 QEMU_CPU=${ARM64_QEMU_CPU:-cortex-a76} \
        PIP_CERT=$CA SSL_CERT_FILE=$CA REQUESTS_CA_BUNDLE=$CA PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$CHROOT" "$ROOT" /bin/bash -euc "cd /opt/fakedet/work && $1"
}
step "install: fakedet's runtime (its own dependencies only) + pytest and onnx for the tests"
in_root "uname -m; test -x /opt/fakedet/venv/bin/python || python3 -m venv /opt/fakedet/venv"
in_root "pip install -q --force-reinstall --no-deps /opt/fakedet/wheels/fakedet-*.whl && pip install -q /opt/fakedet/wheels/fakedet-*.whl pytest onnx"
in_root "python -c 'import importlib.util as u, sys; sys.exit(\"torch is installed in the arm64 root\" if u.find_spec(\"torch\") else 0)'"
in_root "python -c 'import fakedet.runtime, sys; assert \"torch\" not in sys.modules; from fakedet.runtime.cpu_tier import cpu_record; print(cpu_record())'"

step "runtime tests (no torch)"
in_root "python -m pytest -q -p no:cacheprovider $TESTS"

step "fakedet info / predict on the x86-made package"
in_root "fakedet info check/det.fdet | tail -8"
in_root "fakedet predict check/det.fdet check/heldout --backend ort-cpu --precision int8 --json > check/predict-int8.jsonl && wc -l < check/predict-int8.jsonl"

step "FP32 and INT8 against x86 and the exact quantization arithmetic"
in_root "python arm64_check.py check check"
mkdir -p benchmarks/results
cp "$W/work/check/arm64-vs-x86.json" benchmarks/results/arm64-vs-x86.json
step "done: test-arm64 passed in $(( $(date +%s) - t0 ))s"
