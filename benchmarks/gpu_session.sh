#!/usr/bin/env bash
# One short GPU session: the cuda-marked tests first, then the GPU benchmarks, each under a
# time limit, logs under $OUT (default gpu-results/). Run from the repository root on a machine
# with CUDA torch (nothing is installed): bash benchmarks/gpu_session.sh
set -u
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; } \
    2>&1 | tee "$out/device.txt"
timeout "${CUDA_TESTS_S:-200}" python3 -m pytest -m cuda -q -p no:cacheprovider -rfE \
    2>&1 | tee "$out/cuda-tests.log" | tail -40
[ "${TESTS_ONLY:-0}" = 1 ] && exit 0
timeout "${TRAIN_S:-150}" python3 benchmarks/gpu_train.py --budget "${TRAIN_BUDGET_S:-110}" \
    2>&1 | tee "$out/gpu-train.log"
timeout "${DEPLOY_S:-200}" python3 benchmarks/deploy.py --device cuda \
    2>&1 | tee "$out/deploy.log"
