#!/bin/bash
# Builds ngx_http_kubenova_module.so against Debian's nginx-dev, the way
# Debian builds its own dynamic modules: a copy of /usr/share/nginx/src,
# configured with the flags Debian's nginx was built with, then
# "make -f objs/Makefile modules".  Prints the path of the .so.
#
#   BUILD_DIR   where to build (default: build/ in the checkout)
#   KN_CFLAGS   extra compiler flags (e.g. -Werror)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
src=/usr/share/nginx/src
tree=$build/nginx-module

if [ ! -f "$src/conf_flags" ]; then
    echo "$0: $src/conf_flags missing: apt-get install nginx-dev" >&2
    exit 1
fi

# shellcheck disable=SC1091
. "$src/conf_flags"

stamp=$(printf '%s\n' "$repo" "${NGX_CONF_FLAGS[*]}" "${KN_CFLAGS:-}" \
        | cat - "$repo/config" "$repo"/proto/*.proto | sha256sum | cut -d' ' -f1)

mkdir -p "$build"

if [ ! -f "$tree/objs/Makefile" ] || [ "$(cat "$tree/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$tree"
    cp -a "$src" "$tree"
    (
        cd "$tree"
        ./configure "${NGX_CONF_FLAGS[@]}" \
            --with-cc-opt="-g -O2 -fPIC -Wall -Wextra -Wno-unused-parameter ${KN_CFLAGS:-}" \
            --add-dynamic-module="$repo"
    ) > "$build/configure.log" 2>&1 || {
        tail -n 30 "$build/configure.log" >&2
        echo "$0: configure failed, see $build/configure.log" >&2
        exit 1
    }
    echo "$stamp" > "$tree/.stamp"
fi

make -C "$tree" -f objs/Makefile modules > "$build/make.log" 2>&1 || {
    grep -E "error|warning" "$build/make.log" >&2 || tail -n 30 "$build/make.log" >&2
    echo "$0: build failed, see $build/make.log" >&2
    exit 1
}

grep -E "warning:" "$build/make.log" >&2 || true

# replace, never overwrite: a running nginx maps the old file
cp "$tree/objs/ngx_http_kubenova_module.so" "$build/.ngx_http_kubenova_module.so.new"
mv -f "$build/.ngx_http_kubenova_module.so.new" "$build/ngx_http_kubenova_module.so"
echo "$build/ngx_http_kubenova_module.so"
