#!/usr/bin/env bash
# Install everything the default test suite needs, then run it. Used by the README and by .ci/run.
#   Debian packages: bubblewrap (code sandbox), redis-server (cache tests), chromium (docs screenshot),
#   g++ and nodejs (C++ and JavaScript runners). Python deps go into ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(bubblewrap redis-server chromium g++ nodejs)
missing=()
python3 -c "import ensurepip" 2>/dev/null || missing+=(python3-venv)
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,lint]'
exec .venv/bin/python -m pytest -m "not slow and not docker and not peers" "$@"
