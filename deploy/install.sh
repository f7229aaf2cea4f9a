#!/bin/sh
# Install sluice on a gateway or jump host. Run `deploy/install.sh --help`.
set -eu

usage() {
    cat <<'EOF'
Usage: install.sh --mode gateway|jump-host [OPTIONS]

Installs sluice on this machine (or into a scratch root with --root):

  PREFIX/bin/sluice                       the binary (mode 0755)
  /etc/systemd/system/sluice.service      the hardened systemd unit (0644)
  /etc/sluice/                            config directory (0750)
  /etc/sluice/sluice.toml                 deploy/examples/<mode>.toml (0640),
                                          only if there is none: an existing
                                          config is never overwritten
  /etc/sluice/secrets.toml.example        template for auth = "inject" (0600)
  /etc/sluice/token.key                   32 random bytes for masking
                                          format = "token" (0600), made once
  /var/lib/sluice/                        state: the audit store and its
                                          signing key (0700)
  PREFIX/share/man/man1/sluice*.1         man pages
  PREFIX/share/{bash-completion,zsh,fish}/...  shell completions

The audit signing key (store.signing_key, ed25519) is not made here: the
daemon creates it, mode 0600, on its first start, with its public half
beside it (<key>.pub). Copy that public key off the host
(`sluice audit key > audit.pub`): it is what proves the evidence later.

Every step prints what it did: `installed`, `updated`, `unchanged`, `kept`,
`created`, `skipped`. Running it again changes nothing that is already right.

Options:
  --mode gateway|jump-host  which example becomes /etc/sluice/sluice.toml
                            (needed only when there is no config yet)
  --binary PATH             the sluice binary to install (default: ./sluice,
                            else the one beside this script's directory, as
                            in the release tarball, else target/release/sluice)
  --root DIR                install into DIR instead of / (like DESTDIR);
                            systemctl is then never run
  --prefix DIR              where the binary, man pages and completions go
                            (default /usr/local; the unit's ExecStart follows)
  --enable                  systemctl enable sluice (start at boot)
  --start                   systemctl enable --now sluice, after
                            `sluice config check` passes (restarts a running
                            sluice so it runs the installed binary)
  -h, --help                this text

systemctl daemon-reload runs only when installing into / and systemd is
running; without --enable/--start nothing is enabled or started: edit the
config first (the examples' targets and interfaces are placeholders), then

  sluice config check /etc/sluice/sluice.toml
  sluice doctor
  systemctl enable --now sluice

Remove with deploy/uninstall.sh (config and audit store are kept unless
--purge).
EOF
}

die() {
    echo "install.sh: error: $*" >&2
    echo "install.sh: see install.sh --help" >&2
    exit 2
}

say() {
    printf '%-10s %s\n' "$1" "$2"
}

MODE=""
BINARY=""
ROOT=""
PREFIX=/usr/local
ENABLE=0
START=0

while [ $# -gt 0 ]; do
    case "$1" in
    --mode) [ $# -ge 2 ] || die "--mode needs gateway or jump-host"; MODE=$2; shift 2 ;;
    --mode=*) MODE=${1#--mode=}; shift ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; BINARY=$2; shift 2 ;;
    --binary=*) BINARY=${1#--binary=}; shift ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --enable) ENABLE=1; shift ;;
    --start) ENABLE=1; START=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
done

case "$MODE" in
"" | gateway | jump-host) ;;
*) die "--mode must be gateway or jump-host, not '$MODE'" ;;
esac
case "$PREFIX" in
/*) ;;
*) die "--prefix must be absolute: $PREFIX" ;;
esac

# Where this script lives: deploy/ of a checkout, or of the release tarball.
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")

if [ -z "$BINARY" ]; then
    for candidate in ./sluice "$TOP/sluice" "$TOP/target/release/sluice"; do
        if [ -f "$candidate" ] && [ -x "$candidate" ]; then
            BINARY=$candidate
            break
        fi
    done
    [ -n "$BINARY" ] || die "no sluice binary: pass --binary PATH (looked for ./sluice, $TOP/sluice, $TOP/target/release/sluice)"
fi
[ -f "$BINARY" ] || die "--binary $BINARY: no such file"

if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" = / ] && ROOT=""
fi
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "installing into / needs root (or use --root DIR for a scratch root)"
fi

BIN=$PREFIX/bin/sluice
ETC=/etc/sluice
STATE=/var/lib/sluice
UNIT=/etc/systemd/system/sluice.service
CONFIG=$ETC/sluice.toml
MAN1=$PREFIX/share/man/man1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

# Octal mode of a path, e.g. 640.
mode_of() {
    stat -c %a "$1"
}

# ensure_dir DIR MODE: create it, or correct its mode.
ensure_dir() {
    d=$ROOT$1
    if [ ! -d "$d" ]; then
        mkdir -p "$d"
        chmod "$2" "$d"
        say created "$1 (mode $2)"
    elif [ "$(mode_of "$d")" != "${2#0}" ]; then
        was=$(mode_of "$d")
        chmod "$2" "$d"
        say updated "$1 (mode $was -> $2)"
    else
        say unchanged "$1"
    fi
}

# put SRC DEST MODE: install a file sluice owns (the binary, the unit, man
# pages, completions): replaced when its content or mode differ.
put() {
    d=$ROOT$2
    if [ -f "$d" ] && cmp -s "$1" "$d" && [ "$(mode_of "$d")" = "${3#0}" ]; then
        say unchanged "$2"
        return
    fi
    verb=installed
    [ -e "$d" ] && verb=updated
    mkdir -p "$(dirname "$d")"
    # Copy beside and rename, so a running binary is never half-written.
    cp "$1" "$d.sluice-new"
    chmod "$3" "$d.sluice-new"
    mv -f "$d.sluice-new" "$d"
    say "$verb" "$2"
    CHANGED="$CHANGED $2"
}

CHANGED=""

echo "sluice install into ${ROOT:-/} (prefix $PREFIX)"

# 1. Directories.
ensure_dir "$ETC" 0750
ensure_dir "$STATE" 0700

# 2. The binary.
put "$BINARY" "$BIN" 0755

# 3. The unit, its ExecStart pointing at the installed binary.
sed "s|/usr/local/bin/sluice|$BIN|g" "$HERE/sluice.service" >"$TMP/sluice.service"
put "$TMP/sluice.service" "$UNIT" 0644

# 3b. sluice needs kernel 6.6 or later (TCX and BPF links); say so now rather
# than at the first start. `sluice doctor` checks the rest.
if [ -n "$ROOT" ]; then
    say skipped "kernel check (the kernel of $ROOT's machine is unknown)"
else
    kernel=$(uname -r)
    major=${kernel%%.*}
    minor=${kernel#*.}
    minor=${minor%%[!0-9]*}
    if [ "$major" -lt 6 ] || { [ "$major" -eq 6 ] && [ "${minor:-0}" -lt 6 ]; }; then
        echo "warning: kernel $kernel is older than 6.6: sluice will not start here (run \`sluice doctor\`)" >&2
    fi
fi

# 4. The config: the example for the mode, never over an existing one.
if [ -e "$ROOT$CONFIG" ]; then
    say kept "$CONFIG (existing config is never overwritten)"
    if [ -n "$MODE" ] && ! cmp -s "$HERE/examples/$MODE.toml" "$ROOT$CONFIG"; then
        echo "           the current $MODE example is $HERE/examples/$MODE.toml"
    fi
else
    [ -n "$MODE" ] || die "there is no $CONFIG yet: choose its example with --mode gateway or --mode jump-host"
    cp "$HERE/examples/$MODE.toml" "$TMP/sluice.toml"
    chmod 0640 "$TMP/sluice.toml"
    cp -p "$TMP/sluice.toml" "$ROOT$CONFIG"
    say installed "$CONFIG (from examples/$MODE.toml, mode 0640: edit its targets before starting)"
fi

# 5. The secrets template (the real secrets.toml is the operator's).
if [ -f "$HERE/examples/secrets.toml.example" ]; then
    put "$HERE/examples/secrets.toml.example" "$ETC/secrets.toml.example" 0600
fi

# 6. Keys. The masking token key: made once, never replaced (tokens made
# with it must stay the same for joins across sessions to work).
if [ -e "$ROOT$ETC/token.key" ]; then
    say kept "$ETC/token.key"
else
    (umask 077 && head -c 32 /dev/urandom >"$ROOT$ETC/token.key.sluice-new")
    chmod 0600 "$ROOT$ETC/token.key.sluice-new"
    mv "$ROOT$ETC/token.key.sluice-new" "$ROOT$ETC/token.key"
    say created "$ETC/token.key (32 random bytes, mode 0600; for masking format = \"token\")"
fi
say skipped "audit signing key: sluice creates store.signing_key (mode 0600) on its first start"

# 7. Man pages and completions: shipped beside deploy/ in the release
# tarball, else made by the binary itself.
MANSRC=""
if [ -d "$TOP/man" ] && ls "$TOP/man"/sluice*.1 >/dev/null 2>&1; then
    MANSRC=$TOP/man
elif "$BINARY" man --out "$TMP/man" >/dev/null 2>&1 &&
    ls "$TMP/man"/sluice*.1 >/dev/null 2>&1; then
    MANSRC=$TMP/man
fi
if [ -n "$MANSRC" ]; then
    for page in "$MANSRC"/sluice*.1; do
        put "$page" "$MAN1/$(basename "$page")" 0644
    done
else
    say skipped "man pages (none shipped and $BINARY cannot make them)"
fi

COMPSRC=""
if [ -f "$TOP/completions/sluice.bash" ]; then
    COMPSRC=$TOP/completions
elif mkdir -p "$TMP/completions" &&
    "$BINARY" completions bash >"$TMP/completions/sluice.bash" 2>/dev/null &&
    "$BINARY" completions zsh >"$TMP/completions/_sluice" 2>/dev/null &&
    "$BINARY" completions fish >"$TMP/completions/sluice.fish" 2>/dev/null &&
    [ -s "$TMP/completions/sluice.bash" ]; then
    COMPSRC=$TMP/completions
fi
if [ -n "$COMPSRC" ]; then
    put "$COMPSRC/sluice.bash" "$PREFIX/share/bash-completion/completions/sluice" 0644
    put "$COMPSRC/_sluice" "$PREFIX/share/zsh/site-functions/_sluice" 0644
    put "$COMPSRC/sluice.fish" "$PREFIX/share/fish/vendor_completions.d/sluice.fish" 0644
else
    say skipped "shell completions (none shipped and $BINARY cannot make them)"
fi

# 8. systemd: only for a real install on a machine that runs it.
if [ -n "$ROOT" ]; then
    say skipped "systemctl (installing into $ROOT, not /)"
elif [ ! -d /run/systemd/system ]; then
    say skipped "systemctl (systemd is not running here)"
else
    case "$CHANGED" in
    *"$UNIT"* | *"$DROPIN"*)
        systemctl daemon-reload
        say ran "systemctl daemon-reload"
        ;;
    esac
    if [ "$START" = 1 ]; then
        if ! "$BIN" config check "$CONFIG"; then
            die "not starting: $CONFIG does not pass \`sluice config check\` (fix it, then systemctl enable --now sluice)"
        fi
        systemctl enable sluice.service
        systemctl restart sluice.service
        say ran "systemctl enable sluice.service && systemctl restart sluice.service"
    elif [ "$ENABLE" = 1 ]; then
        systemctl enable sluice.service
        say ran "systemctl enable sluice.service (not started)"
    fi
    case "$CHANGED" in
    *"$BIN"*)
        if [ "$START" = 0 ] && systemctl is-active --quiet sluice.service; then
            echo "note: sluice is running the previous binary: systemctl restart sluice"
        fi
        ;;
    esac
fi

echo "done. Next: edit $CONFIG, then \`sluice config check $CONFIG\`, \`sluice doctor\`, \`systemctl enable --now sluice\`."
