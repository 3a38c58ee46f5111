#!/usr/bin/env bash
# Installs what supervise needs on a Debian machine, as root: Debian packages, then the
# Python package in a virtualenv at ./.venv, linked as /usr/local/bin/supervise.
#   scripts/setup.sh          what running a stack needs
#   scripts/setup.sh --test   plus what the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
test_deps=0
[ "${1:-}" = "--test" ] && test_deps=1

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

packages=(python3 python3-venv python3-pip busybox-static tini iproute2 nftables
          slirp4netns redis-server redis-tools)  # slirp4netns: a stack's outbound access
[ "$test_deps" = 1 ] && packages+=(tmux curl rsyslog)  # the syslog output's tests run their own rsyslogd
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# apt starts Debian's own redis on systemd machines; supervise runs its own in containers.
if command -v systemctl >/dev/null && systemctl is-enabled redis-server >/dev/null 2>&1; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  say "python3 -m venv .venv"
  python3 -m venv .venv
fi
extra=""
[ "$test_deps" = 1 ] && extra="[test]"
say "pip install -e .${extra}"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".${extra}"
ln -sf "$PWD/.venv/bin/supervise" /usr/local/bin/supervise
say "supervise is $(command -v supervise)"
