#!/usr/bin/env bash
# Build (once) the real kube-apiserver 1.20.2 + install etcd that the k8s tests run against.
#
# Why: no registry ships a kube-apiserver binary, so it is built offline from Debian's `kubernetes`
# source package by scripts/build-kube-apiserver.sh (~5 min cold on 2 cores, root + apt).
# The binary is cached under .cache/kube; when it is there and runs, this script only makes sure
# etcd is installed and returns in well under a second.
#
# Usage: scripts/setup_kube.sh [DEST_DIR]   (default: .cache/kube; tests also honour $KUBE_APISERVER)
# Prints the kube-apiserver path as the last line of stdout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.cache/kube}"
bin="$dest/kube-apiserver"
builder="$root/scripts/build-kube-apiserver.sh"

# A machine-wide copy survives fresh clones (CI clones anew on the same machine).
shared_cache="${XDG_CACHE_HOME:-$HOME/.cache}/autotune/kube-apiserver-1.20.2"
if [ ! -x "$bin" ] && [ -x "$shared_cache" ] && "$shared_cache" --version >/dev/null 2>&1; then
  mkdir -p "$dest" && cp "$shared_cache" "$bin"
fi
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1 && command -v etcd >/dev/null && command -v openssl >/dev/null; then
  if [ ! -x "$shared_cache" ]; then
    mkdir -p "$(dirname "$shared_cache")" && cp "$bin" "$shared_cache.tmp.$$" && mv "$shared_cache.tmp.$$" "$shared_cache" || true
  fi
  echo "$bin"
  exit 0
fi
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
command -v openssl >/dev/null || { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq openssl >/dev/null; }
mkdir -p "$dest"
$sudo_ bash "$builder" "$dest" >&2
[ -x "$bin" ] || { echo "error: build did not produce $bin" >&2; exit 1; }
mkdir -p "$(dirname "$shared_cache")" && cp "$bin" "$shared_cache.tmp.$$" && mv "$shared_cache.tmp.$$" "$shared_cache" || true
echo "$bin"
