#!/usr/bin/env bash
# Build an AddressSanitizer + UndefinedBehaviorSanitizer nginx with the
# KubeNova module compiled in statically, for the Test::Nginx suite.
#
# Usage (as root on Debian 12):
#   bin=$(scripts/build-asan-nginx.sh)        # last stdout line = binary path
#   TEST_NGINX_BINARY=$bin prove -r t/
#
# Environment:
#   KN_ASAN_CACHE      cache dir (default /var/cache/kubenova/nginx-asan):
#                      Debian's nginx source, the build dirs, build.log
#   KN_ASAN_NO_MODULE  =1 builds a plain sanitized nginx without our module
#                      (kept in a separate build dir, so both can coexist)
#   KN_ASAN_JOBS       make -j (default: nproc)
#
# The source comes from `apt-get source nginx`, pinned to the source version
# of the installed nginx package, so Debian's patches are included. If the
# mirror lists that version but cannot serve its files (seen here: the
# security mirror 404s the .dsc of 1.22.1-9+deb12u11), the newest other
# Debian revision of the same upstream version is used, with a warning.
# A cold build takes ~40 s on 2 cores, plus any apt-get installs. Later runs
# re-run configure only when the stamp changes (repo path, our `config`,
# flags, source version, compiler) and otherwise just run `make`, which
# recompiles only changed module sources/headers (~0.5 s for one file). One
# build dir per variant: checkouts at different paths sharing a cache
# reconfigure each other's build.
#
# ---------------------------------------------------------------------------
# Runtime options for a test harness (checked against this build, gcc 12):
#
#   R=$(mktemp -d); chmod 1777 "$R"          # reports; writable by workers
#   export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:\
#   exitcode=86:detect_stack_use_after_return=1:strict_string_checks=1:\
#   log_path=$R/asan"
#   export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86:\
#   log_path=$R/asan"
#   export LSAN_OPTIONS="suppressions=$(dirname "$BIN")/lsan.supp:\
#   print_suppressions=0"
#
# and after the run: fail if $R has any file, or if any nginx error.log
# contains "runtime error:" (UBSan) or "exited with code 86".
#
# Why:
# * UBSan reports always go to stderr, whatever log_path says: a GCC
#   limitation when ASan and UBSan are combined (GCC bug 94328). nginx
#   redirects stderr into its error log once it has read the configuration,
#   so UBSan reports end up in error.log. ASan and LSan reports do honour
#   log_path, into $R/asan.<pid>.
# * Repeat log_path and exitcode in UBSAN_OPTIONS: UBSan sets itself up at
#   its first report and then re-reads these common flags from
#   UBSAN_OPTIONS only. Without them there, later ASan/LSan output goes to
#   stderr and UBSan's exit code is 1 instead of 86.
# * log_path must be an absolute path in a directory the workers can write.
#   Workers that switched to nobody cannot write into a root-only
#   directory; the report is then lost ("ERROR: Can't open file" in
#   error.log). Hence chmod 1777, or `user root;` in the test config.
# * Keep detect_leaks=1. LeakSanitizer runs in every nginx process that
#   exits normally. Tested with master_process on and off, with QUIT, TERM,
#   and HUP followed by QUIT, also with workers running as nobody: the only
#   leak in nginx itself is the PCRE2 one in lsan.supp (72 bytes per
#   configuration load that compiles a regex, in master and workers). Any
#   other leak report is ours. LSan does not check a process killed with
#   SIGKILL.
# * print_suppressions=0: otherwise every process that used a suppression
#   writes a "Suppressions used" file into $R even when nothing leaked.
# * halt_on_error / -fno-sanitize-recover=undefined: stop at the first
#   error, so the failing worker dies ("exited with code 86"; the master
#   starts a new one) instead of going on with corrupt state. With the two
#   exceptions below, nginx core (HTTP/1.1 incl. pipelining and large
#   headers, HTTP/2, TLS, proxy with keepalive and request bodies, gzip,
#   ranges, regex locations/maps, realip, stub_status, HUP reload) gives no
#   UBSan report, so halting on UB is safe.
# * detect_stack_use_after_return, strict_string_checks: nginx core passes
#   both cleanly here. check_initialization_order only applies to C++, so it
#   does nothing for nginx.
#
# Build flags beyond the required ones (see CC_OPT below), all tested:
# * -fno-sanitize=nonnull-attribute: nginx core calls memcpy(dst, NULL, 0)
#   for empty strings (ngx_pstrdup() in ngx_init_cycle() with no -g, and
#   ngx_sprintf_str() when it logs an empty %V). That is formally UB, but
#   harmless. Since we halt on UB, nginx would die at startup; a non-null
#   pointer that is actually dereferenced still gets caught by ASan.
# * -DNGX_HAVE_NONALIGNED=0: on x86-64, nginx parses methods and HTTP/2
#   frames through unaligned uint32_t/uint16_t casts (ngx_str*cmp in
#   ngx_http_parse.c, the ngx_http_v2_parse/write macros). UBSan's alignment
#   check flags these on pipelined requests and on every HTTP/2 connection.
#   Setting the macro to 0 selects nginx's own portable byte-wise code, so
#   the alignment check stays on for our module.
# * -DNGX_DEBUG_PALLOC=1: not an exception but an aid. Every ngx_palloc()
#   becomes its own malloc(), so ASan sees overflows and use-after-free of
#   pool allocations; otherwise they sit inside 16 KB pool blocks and go
#   unnoticed.
# ---------------------------------------------------------------------------
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CACHE=${KN_ASAN_CACHE:-/var/cache/kubenova/nginx-asan}
JOBS=${KN_ASAN_JOBS:-$(nproc)}

if [ "${KN_ASAN_NO_MODULE:-0}" = 1 ]; then
    VARIANT=plain
else
    VARIANT=kubenova
fi

SAN_CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
SAN_LDFLAGS="-fsanitize=address,undefined"
CC_OPT="$SAN_CFLAGS -fno-sanitize=nonnull-attribute -DNGX_HAVE_NONALIGNED=0 -DNGX_DEBUG_PALLOC=1"
LD_OPT="$SAN_LDFLAGS"

mkdir -p "$CACHE"
LOG=$CACHE/build.log
: > "$LOG"

log() { printf '%s\n' "build-asan-nginx: $*" >&2; }

fail() {
    log "FAILED: $*"
    log "last lines of $LOG:"
    tail -n 60 "$LOG" >&2 || true
    exit 1
}

run() {
    # run a noisy command, output to the log
    printf '\n$ %s\n' "$*" >> "$LOG"
    "$@" >> "$LOG" 2>&1
}

# --- packages -------------------------------------------------------------

APT_UPDATED=no
apt_update() {
    if [ "$APT_UPDATED" = no ]; then
        log "apt-get update"
        run apt-get update || fail "apt-get update"
        APT_UPDATED=yes
    fi
}

need_pkgs() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
                | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt_update
        log "apt-get install ${missing[*]}"
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            --no-install-recommends "${missing[@]}" \
            || fail "apt-get install ${missing[*]}"
    fi
}

# gcc 12 brings libasan8/libubsan1; dpkg-dev provides dpkg-source for
# apt-get source; pcre2 is what Debian's nginx 1.22 uses.
need_pkgs gcc make dpkg-dev xz-utils libpcre2-dev zlib1g-dev libssl-dev
if [ "$VARIANT" = kubenova ]; then
    need_pkgs libpq-dev libjansson-dev libprotobuf-c-dev
fi

# --- deb-src entries ------------------------------------------------------

have_deb_src() {
    grep -Eqs '^[[:space:]]*Types:.*deb-src' /etc/apt/sources.list.d/*.sources \
        || grep -Eqs '^[[:space:]]*deb-src[[:space:]]' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list
}

add_deb_src() {
    local deb822=/etc/apt/sources.list.d/debian.sources
    local list=/etc/apt/sources.list.d/kubenova-deb-src.list
    if [ -f "$deb822" ] && grep -Eq '^Types:[[:space:]]*deb[[:space:]]*$' "$deb822"; then
        log "adding deb-src to $deb822"
        sed -i -E 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb deb-src/' "$deb822"
    elif [ -f /etc/apt/sources.list ] \
            && grep -Eq '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list; then
        log "writing $list"
        sed -n -E 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' \
            /etc/apt/sources.list > "$list"
    else
        fail "no Debian apt sources found to derive deb-src entries from"
    fi
    APT_UPDATED=no
    apt_update
}

# --- source ---------------------------------------------------------------

WANT_VER=$(dpkg-query -W -f='${source:Version}' nginx 2>/dev/null || true)
SRC_ROOT=$CACHE/src
# .source-version: "want=<installed nginx source version>" and "got=<version
# unpacked>"; they differ when apt could not serve the wanted one.
SRC_STAMP=$SRC_ROOT/.source-version

src_dir_of() { find "$SRC_ROOT" -mindepth 1 -maxdepth 1 -type d -name 'nginx-*' | head -n 1; }
stamp_get() { sed -n "s/^$1=//p" "$SRC_STAMP" 2>/dev/null; }

SRC_DIR=
if [ -f "$SRC_STAMP" ] && { [ -z "$WANT_VER" ] || [ "$(stamp_get want)" = "$WANT_VER" ]; }; then
    SRC_DIR=$(src_dir_of)
fi

src_versions() {
    apt-cache showsrc nginx 2>/dev/null | sed -n 's/^Version: //p' | sort -Vru
}

if [ -z "$SRC_DIR" ] || [ ! -x "$SRC_DIR/configure" ]; then
    have_deb_src || add_deb_src
    if [ -n "$WANT_VER" ] && ! grep -qxF "$WANT_VER" <<< "$(src_versions)"; then
        APT_UPDATED=no
        apt_update
    fi
    # Candidates: the installed nginx's source version first, then other
    # Debian revisions of the same upstream version, newest first (a mirror
    # may list a security update's source without serving its files yet).
    # Without an installed nginx: the newest source apt knows.
    if [ -n "$WANT_VER" ]; then
        upstream=${WANT_VER%-*}; upstream=${upstream#*:}
        mapfile -t cands < <(
            printf '%s\n' "$WANT_VER"
            src_versions | grep -vxF "$WANT_VER" \
                | grep -E "^([0-9]+:)?${upstream//./\\.}-" || true)
    else
        mapfile -t cands < <(src_versions | head -n 1)
    fi
    [ ${#cands[@]} -gt 0 ] && [ -n "${cands[0]}" ] \
        || fail "apt knows no nginx source package (deb-src entries?)"
    rm -rf "$SRC_ROOT"
    mkdir -p "$SRC_ROOT"
    got_ver=
    for v in "${cands[@]}"; do
        log "apt-get source nginx=$v (into $SRC_ROOT)"
        # As root, apt cannot drop to _apt for downloading into a root-owned
        # dir; download unsandboxed instead of printing a warning.
        if (cd "$SRC_ROOT" && run apt-get -o APT::Sandbox::User=root \
                source --only-source "nginx=$v"); then
            got_ver=$v
            break
        fi
        log "warning: could not fetch nginx source $v"
        find "$SRC_ROOT" -mindepth 1 -maxdepth 1 ! -name '*.orig.tar.*' \
            -exec rm -rf {} +
    done
    [ -n "$got_ver" ] || fail "apt-get source nginx (tried: ${cands[*]})"
    [ "$got_ver" = "$WANT_VER" ] || [ -z "$WANT_VER" ] \
        || log "warning: installed nginx is $WANT_VER, built from source $got_ver"
    SRC_DIR=$(src_dir_of)
    [ -n "$SRC_DIR" ] && [ -x "$SRC_DIR/configure" ] \
        || fail "no nginx-*/configure under $SRC_ROOT after apt-get source"
    printf 'want=%s\ngot=%s\n' "$WANT_VER" "$got_ver" > "$SRC_STAMP"
fi

# --- configure ------------------------------------------------------------

VDIR=$CACHE/$VARIANT
BUILD=$VDIR/build
PREFIX=$VDIR/prefix

# Debian's HTTP-relevant modules/features; paths are nginx's defaults,
# which are relative to the prefix (logs/, *_temp/), so `-p` (as used by
# Test::Nginx) moves all of them into the test's server root.
CONF_ARGS=(
    --prefix="$PREFIX"
    --builddir="$BUILD"
    --with-cc=gcc
    --with-cc-opt="$CC_OPT"
    --with-ld-opt="$LD_OPT"
    --with-compat
    --with-debug
    --with-pcre-jit
    --with-http_ssl_module
    --with-http_stub_status_module
    --with-http_realip_module
    --with-http_v2_module
    --with-threads
    --with-http_auth_request_module
    --with-http_dav_module
    --with-http_slice_module
    --with-http_addition_module
    --with-http_gunzip_module
    --with-http_gzip_static_module
    --with-http_sub_module
    --with-http_secure_link_module
)
if [ "$VARIANT" = kubenova ]; then
    CONF_ARGS+=(--add-module="$REPO")
fi

stamp_input() {
    printf 'repo=%s\n' "$REPO"
    printf 'source=%s\n' "$(stamp_get got)"
    printf 'srcdir=%s\n' "$SRC_DIR"
    printf 'gcc=%s\n' "$(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)"
    printf 'arg=%s\n' "${CONF_ARGS[@]}"
    if [ "$VARIANT" = kubenova ]; then
        printf 'config:\n'
        cat "$REPO/config"
        # protoc-c runs at configure time: a changed .proto reconfigures
        cat "$REPO"/proto/*.proto
    fi
}
STAMP=$(stamp_input | sha256sum | cut -d' ' -f1)
STAMP_FILE=$VDIR/configure.stamp

if [ ! -f "$BUILD/Makefile" ] || [ ! -f "$STAMP_FILE" ] \
        || [ "$(cat "$STAMP_FILE")" != "$STAMP" ]; then
    log "configure ($VARIANT)"
    rm -f "$STAMP_FILE"
    rm -rf "$BUILD"
    mkdir -p "$VDIR"
    (cd "$SRC_DIR" && run ./configure "${CONF_ARGS[@]}") \
        || fail "configure (see $BUILD/autoconf.err too)"
    printf '%s\n' "$STAMP" > "$STAMP_FILE"
fi

# --- make -----------------------------------------------------------------

# The top-level Makefile in the source dir belongs to whichever variant was
# configured last, so always drive the variant's own objs Makefile.
log "make -j$JOBS ($VARIANT)"
(cd "$SRC_DIR" && run make -j"$JOBS" -f "$BUILD/Makefile") || fail "make"

mkdir -p "$PREFIX/logs" "$PREFIX/conf"
[ -f "$PREFIX/conf/mime.types" ] || cp "$SRC_DIR/conf/mime.types" "$PREFIX/conf/"

BIN=$BUILD/nginx
[ -x "$BIN" ] || fail "no binary at $BIN"

# LeakSanitizer suppressions for nginx core, next to the binary (see the
# comment at the top): LSAN_OPTIONS=suppressions=$(dirname $BIN)/lsan.supp
cat > "$BUILD/lsan.supp.tmp" << 'END'
# nginx 1.22 + PCRE2: ngx_regex_cleanup() frees the cached PCRE2 compile
# context while ngx_regex_free() is a no-op (direct allocation mode is off),
# so 72 bytes leak once per configuration load that compiles a regex.
leak:ngx_regex_malloc
END
mv "$BUILD/lsan.supp.tmp" "$BUILD/lsan.supp"
log "ok, full log in $LOG"
printf '%s\n' "$BIN"
