#!/usr/bin/env bash
# Install Debian's headless Chromium and its ChromeDriver for the browser tests (tests/api/test_browser_chat.py).
# Test tools' own browser downloads fail on these machines (no network but the package registries), so the
# browser comes from Debian's packages: /usr/bin/chromium and /usr/bin/chromedriver. Idempotent.
# fonts-wqy-microhei (small) so a screenshot of the Chinese page shows characters, not boxes.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "installing chromium needs root (apt-get install chromium chromium-driver)" >&2
  exit 1
fi
echo "installing chromium and chromium-driver from Debian's packages…" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-wqy-microhei >&2
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"
