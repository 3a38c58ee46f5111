#!/usr/bin/env bash
# Installs what supervise needs on a Debian machine, as root: Debian packages, then the
# Python package in a virtualenv at ./.venv, linked as /usr/local/bin/supervise.
#   scripts/setup.sh               what running a stack needs
#   scripts/setup.sh --reference   plus node, npm and the npm packages of the reference
#                                  stack's app (configs/reference.toml, configs/nodeapp)
#   scripts/setup.sh --test        plus what the test suite needs (the reference stack's too)
set -euo pipefail
cd "$(dirname "$0")/.."
test_deps=0
reference=0
for arg in "$@"; do
  case "$arg" in
    --test) test_deps=1; reference=1 ;;  # the e2e tests run the reference stack
    --reference) reference=1 ;;
    *) echo "usage: scripts/setup.sh [--reference] [--test]" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

packages=(python3 python3-venv python3-pip busybox-static tini iproute2 nftables
          slirp4netns redis-server redis-tools)  # slirp4netns: a stack's outbound access
[ "$test_deps" = 1 ] && packages+=(tmux curl rsyslog)  # the syslog output's tests run their own rsyslogd
# image tests: skopeo and umoci read and write archives, docker-registry is run on loopback
[ "$test_deps" = 1 ] && packages+=(skopeo umoci docker-registry)
if [ "$reference" = 1 ]; then
  # The app runs the host's node through the `host` image, which shows the host's /usr only.
  [ -x /usr/bin/node ] || [ -x /usr/local/bin/node ] || packages+=(nodejs)
  # Debian ships npm apart; other node packages (NodeSource's) include it and conflict.
  command -v npm >/dev/null || packages+=(npm)
fi
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
# ... and its registry on :5000; the image tests start their own on a free port.
if command -v systemctl >/dev/null && systemctl is-enabled docker-registry >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
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
# Byte-code now: where PYTHONDONTWRITEBYTECODE is set, every command would compile anew.
.venv/bin/python -m compileall -q supervisor logging_bus >/dev/null || true
if [ "$reference" = 1 ]; then
  say "npm ci in configs/nodeapp"
  (cd configs/nodeapp && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
fi
say "supervise is $(command -v supervise)"
