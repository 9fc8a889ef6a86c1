#!/usr/bin/env bash
# Create (once) a Python venv with the PyTorch oracle's tools: torch (training reference and
# speed anchor of `resnet train`), onnx (reading the zoo-shaped graphs), onnxruntime (checking
# the conversion), numpy and safetensors. Heavy (torch from PyPI is ~1 GB with its CUDA
# libraries; CI does not run this). Used by scripts/torch_onnx.py, torch_golden.py,
# torch_train_bench.py and bench-train-vs-torch.sh.
#
# Usage: scripts/torch-venv.sh DIR   — then DIR/bin/python has them.
# Environment:
#   TORCH_INDEX_URL  extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu for the
#                    CPU-only wheel (~200 MB) instead of PyPI's CUDA build; same version either way
set -euo pipefail
dir=${1:?usage: torch-venv.sh DIR}
if [ ! -x "$dir/bin/python" ]; then
  python3 -m venv "$dir"
fi
index=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  index=(--extra-index-url "$TORCH_INDEX_URL")
fi
"$dir/bin/python" -m pip install -q --disable-pip-version-check "${index[@]}" \
  "torch==2.15.0" "numpy==2.4.6" "onnx==1.23.2" "onnxruntime==1.32.0" "safetensors==0.8.0"
"$dir/bin/python" -c "import torch, onnx, onnxruntime, numpy, safetensors; print('ok', 'torch', torch.__version__, 'onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__, 'numpy', numpy.__version__, 'safetensors', safetensors.__version__)"
