#!/bin/sh
# Remove what deploy/install.sh installed. Run `deploy/uninstall.sh --help`.
set -eu

usage() {
    cat <<'EOF'
Usage: uninstall.sh [OPTIONS]

Removes sluice from this machine (or from a scratch root with --root):
the binary, the systemd unit, the man pages and the shell completions.

Before that, on a real install (/): stops and disables sluice.service when
systemd runs, and runs `sluice cleanup` so no pinned eBPF program or policy
route is left steering protected flows to a proxy that is gone (they would
otherwise keep failing closed).

Kept unless --purge:
  /etc/sluice       the config, secrets and keys
  /var/lib/sluice   the audit store and its signing key: the evidence of
                    every recorded session. Export or copy it first (`sluice
                    audit export`, `sluice audit key`); retention rules
                    (e.g. PCI DSS 10.5.1) may require keeping it.

Options:
  --root DIR     remove from DIR instead of / (systemctl and cleanup are
                 then never run)
  --prefix DIR   the prefix install.sh used (default /usr/local)
  --purge        also delete /etc/sluice and /var/lib/sluice
  -h, --help     this text

Each step prints what it did: `removed`, `absent`, `kept`, `purged`,
`skipped`. Running it again is harmless.
EOF
}

die() {
    echo "uninstall.sh: error: $*" >&2
    echo "uninstall.sh: see uninstall.sh --help" >&2
    exit 2
}

say() {
    printf '%-10s %s\n' "$1" "$2"
}

ROOT=""
PREFIX=/usr/local
PURGE=0

while [ $# -gt 0 ]; do
    case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
done

if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" = / ] && ROOT=""
fi
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "removing from / needs root (or use --root DIR)"
fi

BIN=$PREFIX/bin/sluice
ETC=/etc/sluice
STATE=/var/lib/sluice
UNIT=/etc/systemd/system/sluice.service
CONFIG=$ETC/sluice.toml
MAN1=$PREFIX/share/man/man1

remove() {
    if [ -e "$ROOT$1" ] || [ -L "$ROOT$1" ]; then
        rm -f "$ROOT$1"
        say removed "$1"
    else
        say absent "$1"
    fi
}

echo "sluice uninstall from ${ROOT:-/} (prefix $PREFIX)"

# 1. Stop the daemon and take its kernel state down.
if [ -n "$ROOT" ]; then
    say skipped "systemctl and sluice cleanup (removing from $ROOT, not /)"
else
    if [ -d /run/systemd/system ] && [ -e "$UNIT" ]; then
        systemctl disable --now sluice.service || true
        say ran "systemctl disable --now sluice.service"
    else
        say skipped "systemctl (systemd is not running or the unit is absent)"
    fi
    if [ -x "$BIN" ] && [ -f "$CONFIG" ]; then
        # A stopped daemon removed its pins already; this catches a crashed one.
        "$BIN" cleanup --config "$CONFIG" || say skipped "sluice cleanup failed (see above)"
    fi
fi

# 2. What sluice owns.
remove "$BIN"
remove "$UNIT"
found=0
for page in "$ROOT$MAN1"/sluice.1 "$ROOT$MAN1"/sluice-*.1 "$ROOT$MAN1"/sluice.1.gz "$ROOT$MAN1"/sluice-*.1.gz; do
    [ -e "$page" ] || continue
    rm -f "$page"
    found=$((found + 1))
done
if [ "$found" -gt 0 ]; then
    say removed "$MAN1/sluice*.1 ($found pages)"
else
    say absent "$MAN1/sluice*.1"
fi
remove "$PREFIX/share/bash-completion/completions/sluice"
remove "$PREFIX/share/zsh/site-functions/_sluice"
remove "$PREFIX/share/fish/vendor_completions.d/sluice.fish"

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say ran "systemctl daemon-reload"
fi

# 3. Config and evidence.
if [ "$PURGE" = 1 ]; then
    for d in "$ETC" "$STATE"; do
        if [ -e "$ROOT$d" ]; then
            rm -rf "$ROOT$d"
            say purged "$d"
        else
            say absent "$d"
        fi
    done
else
    if [ -e "$ROOT$ETC" ]; then
        say kept "$ETC (config, secrets, keys; --purge deletes it)"
    fi
    if [ -e "$ROOT$STATE" ]; then
        say kept "$STATE (the audit store: evidence; --purge deletes it)"
    fi
fi
echo "done."
