#!/usr/bin/env bash
# Build kube-apiserver v1.20.2 from source, offline, and install etcd, for the k8s tests.
#
# No package registry ships a kube-apiserver binary. Debian bookworm's `kubernetes` *source* package
# does: its upstream (orig) tarball is the whole Kubernetes 1.20.2 tree with vendor/ included, so the
# binary builds with Debian's Go (1.19) and no module proxy. Three things need fixing on the way:
#   - vendor/github.com/modern-go/reflect2 v1.0.1 does not work with Go >= 1.18: Debian's
#     golang-github-modern-go-reflect2-dev (1.0.2) sources replace it;
#   - Go >= 1.17 rejects vendor/modules.txt while the old "# module => replacement" wildcard lines sit
#     among the module entries: they are moved to the end;
#   - pkg/generated/openapi is generated at build time (`make generated_files`, ~2 min).
# The version is stamped with -ldflags, otherwise /version reports v0.0.0-master.
# etcd comes from the `etcd-server` package (etcd 3.4).
#
# Usage:  build-kube-apiserver.sh DEST_DIR     (as root: apt-get, a deb-src entry)
# Result: DEST_DIR/kube-apiserver; its path is the last line of stdout. A binary already there that
#         runs is kept (only a missing etcd is installed). Cold: ~5 min on 2 cores, ~1.7 GB of scratch.
# Env:    BUILD_DIR=dir   scratch directory (default: a new temporary one, removed after a good build)
#         KEEP_BUILD=1    keep the scratch directory (sources, Go cache) after a good build
# Called by scripts/setup_kube.sh, which also caches the result.
set -euo pipefail

readonly K8S_VERSION=1.20.2
readonly SUITE=bookworm   # later suites ship a "+ds" source without the server code

say() { printf '[build-kube-apiserver] %s\n' "$*" >&2; }
die() { printf 'build-kube-apiserver: error: %s\n' "$*" >&2; exit 1; }

if [ $# -ne 1 ]; then
  printf 'usage: %s DEST_DIR\n' "$0" >&2
  exit 2
fi
dest=$(realpath -m "$1")
out="$dest/kube-apiserver"
export DEBIAN_FRONTEND=noninteractive

is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

ensure_packages() {
  local want=() pkg
  for pkg in "$@"; do is_installed "$pkg" || want+=("$pkg"); done
  [ "${#want[@]}" -gt 0 ] || return 0
  [ "$(id -u)" -eq 0 ] || die "need root to install: ${want[*]}"
  say "installing ${want[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

# The archive URI of the machine's Debian $SUITE main entry (deb822 *.sources, then one-line *.list).
suite_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = uris = suites = comps = ""
        for (i = 1; i <= NF; i++) {
          key = $i; sub(/:.*/, "", key); val = $i; sub(/^[^:]*:[ \t]*/, "", val)
          if (key == "Types") types = " " val " "
          else if (key == "URIs") uris = val
          else if (key == "Suites") suites = " " val " "
          else if (key == "Components") comps = " " val " "
        }
        split(uris, u, /[ \t]+/)
        if (types ~ / deb / && suites ~ (" " suite " ") && comps ~ / main / && u[1] !~ /security/) { print u[1]; exit }
      }' "$f") || true
    [ -z "$uri" ] || break
  done
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v suite="$SUITE" '
      $1 != "deb" { next }
      {
        n = 2
        if ($2 ~ /^\[/) { while (n < NF && $n !~ /\]$/) n++; n++ }   # skip [options]
        if ($(n + 1) == suite && $n !~ /security/)
          for (i = n + 2; i <= NF; i++) if ($i == "main") { print $n; exit }
      }') || true
  fi
  printf '%s\n' "$uri"
}

ensure_deb_src() {
  if grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  local mirror
  mirror=$(suite_mirror) || true
  [ -n "$mirror" ] || die "no Debian $SUITE main entry in /etc/apt to derive a deb-src entry from"
  say "adding deb-src $mirror $SUITE main"
  cat >"/etc/apt/sources.list.d/autotune-$SUITE-src.sources" <<EOF
Types: deb-src
URIs: $mirror
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -qq
}

# Go >= 1.17 wants the "# path => replacement" lines of a Go 1.15 modules.txt after the module entries.
reorder_modules_txt() {
  awk '$1 == "#" && $3 == "=>" { tail[++n] = $0; next } { print } END { for (i = 1; i <= n; i++) print tail[i] }' \
    vendor/modules.txt >vendor/modules.txt.new
  mv vendor/modules.txt.new vendor/modules.txt
}

replace_reflect2() {
  local vend=vendor/github.com/modern-go/reflect2 deb=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -d "$deb" ] || die "$deb missing (golang-github-modern-go-reflect2-dev)"
  rm -rf "$vend"
  mkdir -p "$vend"
  cp "$deb"/*.go "$deb"/*.s "$vend"/
  rm -f "$vend"/*_test.go
}

# --- already built: keep it ------------------------------------------------------------------------
if [ -x "$out" ] && "$out" --version >/dev/null 2>&1; then
  say "kept $("$out" --version) at $out"
  command -v etcd >/dev/null || ensure_packages etcd-server
  echo "$out"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and may add a deb-src entry)"
command -v apt-get >/dev/null || die "needs apt-get (Debian or Ubuntu)"

ensure_deb_src
ensure_packages etcd-server golang-go golang-github-modern-go-reflect2-dev rsync jq make

scratch_is_temp=0
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR=$(mktemp -d)
  scratch_is_temp=1
fi
mkdir -p "$BUILD_DIR"
chmod 755 "$BUILD_DIR"   # apt-get source fetches as the _apt user
say "scratch: $BUILD_DIR"
cd "$BUILD_DIR"

# --- source: the orig tarball of kubernetes/$SUITE ---------------------------------------------------
if ! compgen -G 'kubernetes_*.orig.tar.gz' >/dev/null; then
  say "apt-get source kubernetes/$SUITE"
  apt-get source --download-only -qq "kubernetes/$SUITE" >/dev/null
fi
tarball=$(compgen -G 'kubernetes_*.orig.tar.gz' | head -n 1) || die "apt-get source left no orig tarball"
rm -rf "kubernetes-$K8S_VERSION"
tar -xzf "$tarball"
[ -d "kubernetes-$K8S_VERSION" ] || die "$tarball did not unpack to kubernetes-$K8S_VERSION/"
cd "kubernetes-$K8S_VERSION"

replace_reflect2
reorder_modules_txt

# --- build --------------------------------------------------------------------------------------------
export GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0
export GOCACHE="${GOCACHE:-$BUILD_DIR/go-cache}" GOPATH="${GOPATH:-$BUILD_DIR/go-path}"

say "make generated_files"
make generated_files >/dev/null

minor=${K8S_VERSION#*.}
minor=${minor%%.*}
ldflags=(-s -w)
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=("-X" "$pkg.gitVersion=v$K8S_VERSION" "-X" "$pkg.gitMajor=${K8S_VERSION%%.*}"
            "-X" "$pkg.gitMinor=$minor" "-X" "$pkg.gitTreeState=clean")
done

say "go build ./cmd/kube-apiserver"
mkdir -p "$dest"
go build -trimpath -ldflags "${ldflags[*]}" -o "$out.partial" ./cmd/kube-apiserver
mv "$out.partial" "$out"
say "built $("$out" --version)"

cd /
if [ "$scratch_is_temp" -eq 1 ] && [ "${KEEP_BUILD:-0}" != 1 ]; then
  chmod -R u+w "$BUILD_DIR" 2>/dev/null || true   # the Go module cache is read-only
  rm -rf "$BUILD_DIR"
fi
echo "$out"
