#!/usr/bin/env bash
# One short GPU session (device time is 15 minutes a task, the start included): the
# cuda-marked tests first, then the GPU benchmarks, each under its own time limit, logs
# under $OUT (default gpu-results/). Run from the repository root on a machine with CUDA
# torch (nothing is installed): bash benchmarks/gpu_session.sh
#   TESTS_ONLY=1        the tests alone
#   CUDA_TESTS_S=150    limit of the cuda tests (graphed-step tests first)
#   SPEED_S=270         s / 1k iterations, ResNet-20/56/110 x eager, compiled, graphed
#   TABLE6_S=170        the Table 6 set's wall time at TABLE6_ITERATIONS (default 500) each
#   CONFIGS=1 DEPLOY=1  also the ResNet-56 configuration table and benchmarks/deploy.py
set -u
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; } \
    2>&1 | tee "$out/device.txt"
timeout "${GRAPHED_TESTS_S:-90}" python3 -m pytest -m cuda -q -p no:cacheprovider -rfE \
    tests/test_train_graphed.py 2>&1 | tee "$out/cuda-graphed-tests.log" | tail -20
timeout "${CUDA_TESTS_S:-150}" python3 -m pytest -m cuda -q -p no:cacheprovider -rfE \
    --ignore=tests/test_train_graphed.py 2>&1 | tee "$out/cuda-tests.log" | tail -40
[ "${TESTS_ONLY:-0}" = 1 ] && exit 0
timeout "${SPEED_S:-270}" python3 benchmarks/gpu_train.py --what speed \
    --budget "$(( ${SPEED_S:-270} - 20 ))" 2>&1 | tee "$out/gpu-speed.log"
timeout "${TABLE6_S:-170}" python3 benchmarks/gpu_train.py --what table6 \
    --table6-iterations "${TABLE6_ITERATIONS:-500}" 2>&1 | tee "$out/gpu-table6.log"
if [ "${CONFIGS:-0}" = 1 ]; then
    timeout "${TRAIN_S:-150}" python3 benchmarks/gpu_train.py --budget "${TRAIN_BUDGET_S:-110}" \
        2>&1 | tee "$out/gpu-train.log"
fi
if [ "${DEPLOY:-0}" = 1 ]; then
    timeout "${DEPLOY_S:-200}" python3 benchmarks/deploy.py --device cuda \
        2>&1 | tee "$out/deploy.log"
fi
