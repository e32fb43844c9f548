#!/bin/sh
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) are present.
#
# Idempotent: if /usr/lib/postgresql/*/bin already holds them, does nothing.
# Otherwise installs Debian's `postgresql` package non-interactively, with a
# temporary policy-rc.d so the system's cluster service is not started (the
# package may still create its default cluster; we never use it — our test
# clusters run on their own random port, see scripts/pg-cluster.mjs).
#
# Prints one line on success; on failure, a reason plus the tail of the apt
# log on stderr, and exits non-zero.
#
# Env: PG_INSTALL_FORCE=1 runs apt even if binaries are found (for testing).
set -eu

find_bindir() {
  # Highest major version (numerically: 16 > 9) with a complete server.
  best=""; bestv=-1
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] || continue
    v=$(basename "$(dirname "$d")"); v=${v%%.*}
    case $v in *[!0-9]*|'') v=0 ;; esac
    if [ "$v" -gt "$bestv" ]; then best=$d; bestv=$v; fi
  done
  printf '%s' "$best"
}

report() {
  bindir=$1
  ver=$("$bindir/postgres" --version 2>/dev/null || echo "PostgreSQL (unknown version)")
  echo "pg-install: $2: $ver ($bindir)"
}

bindir=$(find_bindir)
if [ -n "$bindir" ] && [ "${PG_INSTALL_FORCE:-0}" != 1 ]; then
  report "$bindir" "already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "pg-install: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin and no apt-get to install them" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "pg-install: need root (or passwordless sudo) to apt-get install postgresql" >&2
    exit 1
  fi
fi

log=$(mktemp /tmp/pg-install.XXXXXX.log)
policy=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
  if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Keep invoke-rc.d / deb-systemd-invoke from starting the cluster service.
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 0755 "$policy"
  made_policy=1
fi

apt() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
    -o DPkg::Lock::Timeout=300 "$@" >>"$log" 2>&1
}

if ! { apt update && apt install --no-install-recommends postgresql; }; then
  echo "pg-install: apt-get install postgresql failed (log: $log); last lines:" >&2
  tail -n 15 "$log" >&2
  exit 1
fi

bindir=$(find_bindir)
if [ -z "$bindir" ]; then
  echo "pg-install: installed postgresql but found no initdb/pg_ctl/postgres in /usr/lib/postgresql/*/bin (log: $log)" >&2
  exit 1
fi
rm -f "$log"
report "$bindir" "installed"
