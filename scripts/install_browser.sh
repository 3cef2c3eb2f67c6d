#!/usr/bin/env bash
# Install Debian's headless Chromium and its ChromeDriver for the browser tests (tests/api/test_browser_chat.py).
# Test tools' own browser downloads fail on these machines (no network but the package registries), so the
# browser comes from Debian's packages: /usr/bin/chromium and /usr/bin/chromedriver. Idempotent.
# fonts-wqy-microhei (small) so a screenshot of the Chinese page shows characters, not boxes; the reports' PDFs
# embed it (orders/reports/pdf.py), so it is installed even where Chromium already is.
set -euo pipefail
FONT=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
packages=()
if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
  packages+=(chromium chromium-driver)
fi
if [ ! -f "$FONT" ]; then
  packages+=(fonts-wqy-microhei)
fi
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "installing ${packages[*]} needs root (apt-get install ${packages[*]})" >&2
    exit 1
  fi
  echo "installing ${packages[*]} from Debian's packages…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
echo "CJK font: $FONT"
