#!/bin/sh
# What the browser tests of the console (t/080-dashboard.t) need: Debian's
# chromium, Node.js with npm, and playwright-core from npm, installed with
# "npm ci" from t/dashboard/package-lock.json into a cache outside the
# checkout (KN_NPM_CACHE, default /var/cache/kubenova-npm), again whenever
# the lock file changes.  Prints the node_modules directory.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${KN_NPM_CACHE:-/var/cache/kubenova-npm}

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    if [ "$(id -u)" != 0 ]; then
        echo "$0: not root; run: sudo apt-get install$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

lock=$repo/t/dashboard/package-lock.json
sum=$(sha256sum "$lock" | cut -d' ' -f1)
dir=$cache/$sum
if [ ! -f "$dir/.installed" ]; then
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.install.XXXXXX")
    cp "$repo/t/dashboard/package.json" "$lock" "$tmp/"
    (cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >&2
    touch "$tmp/.installed"
    # another run may have finished first: keep whichever is there
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
fi
echo "$dir/node_modules"
