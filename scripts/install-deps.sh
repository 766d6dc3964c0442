#!/bin/sh
# Installs the Debian packages KubeNova needs to build, run and test, when
# they are missing.  Usage: scripts/install-deps.sh [build|run|test]
set -eu

build="nginx nginx-dev libpq-dev libjansson-dev libprotobuf-c-dev
       protobuf-c-compiler libssl-dev libyaml-dev libpcre2-dev zlib1g-dev
       gcc make"
run="$build postgresql postgresql-client curl openssl"
test="$run libtest-base-perl perl curl procps psmisc"

case "${1:-build}" in
    build) want=$build ;;
    run)   want=$run ;;
    test)  want=$test ;;
    *)     echo "usage: $0 [build|run|test]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done

if [ -n "$missing" ]; then
    echo "installing:$missing"
    if [ "$(id -u)" != 0 ]; then
        echo "$0: not root; run: sudo apt-get install$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
