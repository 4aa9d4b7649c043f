#!/bin/bash
# Installs what Berth and its test suite need on a Debian machine, as root: system packages (apt), the
# npm dependencies (which bring Node.js 24), and, with --services, starts the services tests use.
# Idempotent and quick when everything is already in place. Downloads are cached under /var/cache/berth.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${BERTH_CACHE:-/var/cache/berth}
# What the CLI drives (mmdebstrap, gpgv, xz, zstd, ...) and what the tests use as oracles and peers.
APT_PACKAGES=(
  ca-certificates curl gpgv debian-archive-keyring xz-utils zstd bzip2
  mmdebstrap dpkg-dev libdpkg-dev gcc libc6-dev
  squashfs-tools dosfstools mtools fdisk e2fsprogs cpio
  qemu-system-x86 qemu-utils ovmf openssh-client procps skopeo zip
  docker.io
  python3 python3-apt python3-debian time lynis kmod openssl
  cryptsetup-bin gdb
  postgresql etcd-server chromium
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs system packages)" >&2
  exit 2
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# kubectl for the Kubernetes tests: Debian's, unless the machine already has one (another vendor's
# kubectl package owns the same path).
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  mkdir -p "$CACHE/apt/archives/partial"
  apt-get update -qq || echo "setup: apt-get update reported errors; trying with what is there" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dir::Cache::Archives="$CACHE/apt/archives" "${missing[@]}" >/dev/null
fi

# Node 24 arrives as the `node` devDependency; npm ci reruns only when the lock file changed.
stamp=node_modules/.berth-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x node_modules/node/bin/node ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: npm ci"
  npm ci --cache "$CACHE/npm" --prefer-offline --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
# npm ci builds the native helper (postinstall); rebuild it when its source is newer.
[ build/berth-ptrace -nt native/berth-ptrace.c ] || sh scripts/build-native.sh

start_dockerd() {
  if docker info >/dev/null 2>&1; then return 0; fi
  echo "setup: starting dockerd"
  (dockerd >/var/log/berth-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "setup: dockerd did not start; see /var/log/berth-dockerd.log" >&2
  return 1
}

# PostgreSQL for the fleet server's tests: Debian's cluster, a superuser role "berth" over the local
# socket and TCP on loopback (password "berth"); tests create and drop databases of their own.
start_postgresql() {
  local version
  version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$version" ] || { echo "setup: postgresql is not installed" >&2; return 1; }
  pg_lsclusters -h 2>/dev/null | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
  if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
    echo "setup: starting postgresql $version"
    pg_ctlcluster "$version" main start
  fi
  for _ in $(seq 1 30); do
    su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
    sleep 1
  done
  su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='berth'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"create role berth login superuser password 'berth'\"" >/dev/null
}

if [ "${1:-}" = "--services" ]; then
  start_dockerd
  start_postgresql
fi
