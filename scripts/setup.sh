#!/usr/bin/env bash
# Create .venv with the CPU build of torch and magi installed (idempotent); install Debian's chromium and its
# driver for the web page's browser test (tests/test_web.py) where they are missing and apt is at hand.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/pip install -q --disable-pip-version-check -e ".[text,data,eval,dev]"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: tests/test_web.py needs chromium and chromedriver (apt-get install chromium chromium-driver)" >&2
  fi
fi
