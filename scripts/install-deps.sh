#!/bin/sh
# Installs the Debian packages KubeNova needs to build, run and test, when
# they are missing.  Usage: scripts/install-deps.sh [build|run|test|k8s]
#
# k8s: what t/k8s/control-plane.sh needs to build and run a real control
# plane (Go and Debian's kubernetes source package, etcd) and the
# Operator's Kubernetes client and its tests (libcurl, kubectl 1.20).
set -eu

build="nginx nginx-dev libpq-dev libjansson-dev libprotobuf-c-dev
       protobuf-c-compiler libssl-dev libyaml-dev libpcre2-dev zlib1g-dev
       libcurl4-openssl-dev pkg-config gcc make"
run="$build postgresql postgresql-client curl openssl"
test="$run libtest-base-perl libyaml-libyaml-perl perl curl procps psmisc
      python3-grpcio python3-grpc-tools python3-protobuf"
k8s="golang-go etcd-server golang-github-modern-go-reflect2-dev dpkg-dev
     rsync jq openssl curl libcurl4-openssl-dev libjansson-dev libyaml-dev
     gcc make perl libio-socket-ssl-perl kubernetes-client"

case "${1:-build}" in
    build) want=$build ;;
    run)   want=$run ;;
    test)  want=$test ;;
    k8s)   want=$k8s ;;
    *)     echo "usage: $0 [build|run|test|k8s]" >&2; exit 2 ;;
esac

# Some machines carry another package's /usr/bin/kubectl (e.g. the Google
# Cloud SDK's); kubernetes-client cannot be installed beside it, so it is
# left out here and t/k8s/control-plane.sh unpacks Debian's package into
# its cache instead.
owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
if [ -n "$owner" ] && [ "$owner" != kubernetes-client ]; then
    want=$(printf '%s\n' $want | grep -vx kubernetes-client || true)
fi

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
