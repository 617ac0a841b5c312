#!/usr/bin/env bash
# A separate venv with the peers (verl, TRL) for the GRPO cross-check: never mixed into the project's venv.
# torch is installed first and pinned so nothing pulls a CUDA build. Exit status non-zero if anything fails.
set -euo pipefail
venv="${1:-.venv-peers}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch==2.13.0 numpy==2.4.6
"$venv/bin/pip" install -q --no-deps trl==1.16.0 verl==0.9.1
"$venv/bin/pip" install -q packaging==26.3 omegaconf==2.4.0 tensordict==0.15.3 transformers==5.23.0 \
    accelerate==1.15.0 ray==2.60.0 datasets==5.2.0 codetiming==1.4.0 orjson==3.13.0 \
    pytest==9.2.0 hypothesis==6.170.15 pytest-timeout==2.4.0 safetensors==0.8.0 \
    fastapi==0.165.0 uvicorn==0.54.0 httpx==0.28.1 pydantic==2.13.4 pydantic-settings==2.14.1 \
    prometheus-client==0.26.0 "torch==2.13.0"
# the project itself (pinned runtime deps), so bench/grpo_throughput.py can start `referee serve` from here
"$venv/bin/pip" install -q -e .
"$venv/bin/python" -c "import trl, verl; print('peers:', trl.__version__, verl.__version__)"
