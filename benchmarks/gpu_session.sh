#!/usr/bin/env bash
# One call on a machine with an NVIDIA GPU: the CUDA tests, the device-agreement table and the
# GradSUM throughput on the GPU (issue "Scale"). Writes everything to ${OUT:-gpu_results}/.
#   bash benchmarks/gpu_session.sh            # about 6-8 minutes on one H200, after `make install`
set -u
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
$PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" >> "$OUT/gpu.txt" 2>&1
$PY -m pytest -q -p no:cacheprovider tests/methods/test_cuda_agreement.py tests/methods/test_position_independent.py \
    tests/core/test_precision.py -k "cuda or CUDA or device" > "$OUT/cuda_tests.txt" 2>&1
$PY benchmarks/bench_devices.py --device cuda > "$OUT/devices.txt" 2>&1
$PY benchmarks/bench_gradsum.py --device cuda --n 4096 --batch-size 128 --repeats 5 > "$OUT/gradsum_pilotnet.txt" 2>&1
$PY benchmarks/bench_gradsum.py --device cuda --model torchvision:resnet50 --size 256x512 --n 512 --batch-size 32 \
    --repeats 5 > "$OUT/gradsum_resnet50.txt" 2>&1
tail -n 5 "$OUT"/*.txt
