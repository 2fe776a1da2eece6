#!/usr/bin/env bash
# Install everything the chaos lab needs on this machine (Debian 12, root):
# system packages (without letting their scripts start daemons in the root namespace)
# and the project's virtualenv in .venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (the lab boots systemd-nspawn guests on a bridge)" >&2
  exit 2
fi

PACKAGES=(
  iproute2 util-linux procps iptables curl ca-certificates openssh-client
  systemd-container debootstrap   # lab hosts are systemd-nspawn guests on debootstrap templates
  python3 python3-venv
  python3-cryptography python3-packaging   # Molecule runs controller tasks under /usr/bin/python3 (lab_pki, pip)
  wrk                        # benchmarks/load_driver.py compares the load driver with it
  redis-tools                # redis-cli: the cache fault tests and benchmark talk to cache1's Redis
  chromium chromium-driver   # the HTML report is opened in a real headless browser (tests, benchmark)
)

missing=()
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  created_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Package scripts must not start daemons on the controller.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    created_policy=true
  fi
  trap '$created_policy && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
echo "setup.sh: system packages and .venv ready"
