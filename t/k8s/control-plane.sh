#!/bin/bash
# A real Kubernetes control plane for the tests: etcd, kube-apiserver and
# kube-controller-manager (1.20) on loopback, with no nodes.  Objects, RBAC,
# admission, server-side apply, CRDs, TokenRequest and garbage collection
# are real; pods are stored but never run.
#
#   t/k8s/control-plane.sh build        build the binaries once into the cache
#   t/k8s/control-plane.sh start DIR    certificates, etcd, apiserver and
#                                       controller-manager under DIR
#   t/k8s/control-plane.sh stop DIR     stop what start started (pid files)
#   t/k8s/control-plane.sh restart-apiserver DIR
#                                       stop kube-apiserver and start it again
#                                       on the same port (its watch cache starts
#                                       afresh: older resourceVersions get 410)
#   t/k8s/control-plane.sh kubectl      print the path of Debian's kubectl 1.20
#
# Nothing is downloadable as a binary here, so the binaries come from
# Debian's "kubernetes" source package (the one that builds kubectl), built
# with Debian's Go; etcd is Debian's etcd-server.  The build lives outside
# the checkout, in $KN_K8S_CACHE (default /var/cache/kubenova-k8s), and is
# shared by every later run on the machine.
#
# start picks free loopback ports (so concurrent runs do not collide) unless
# KN_K8S_PORT / KN_ETCD_PORT are set, and writes DIR/env, a shell fragment:
#   KN_K8S_SERVER=https://127.0.0.1:PORT  KN_K8S_PORT=PORT
#   KUBECONFIG=DIR/admin.kubeconfig       (client cert in system:masters)
#   KN_K8S_CA=DIR/ca.crt  KN_K8S_ADMIN_CERT=…  KN_K8S_ADMIN_KEY=…
#   KN_KUBECTL=/path/to/kubectl-1.20
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KN_K8S_CACHE:-/var/cache/kubenova-k8s}
k8s_version=1.20.5+really1.20.2
src_dir="$cache/kubernetes-$k8s_version"

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "$*"; exit 1; }

# -- build -----------------------------------------------------------------

apt_source_enabled() {
    grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/
}

enable_deb_src() {
    # "apt-get source" needs deb-src entries: add them beside the deb ones.
    local f=/etc/apt/sources.list.d/debian.sources
    apt_source_enabled && return 0
    if [ -f "$f" ]; then
        sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
    else
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list \
            > /etc/apt/sources.list.d/kubenova-deb-src.list
    fi
    apt-get update -qq
}

fetch_source() {
    [ -d "$src_dir" ] && return 0
    enable_deb_src
    (cd "$cache" && apt-get source -qq "kubernetes=$k8s_version-1.1+deb12u1" \
        >"$cache/source.log" 2>&1 \
        || apt-get source -qq kubernetes >>"$cache/source.log" 2>&1) \
        || die "apt-get source kubernetes failed: see $cache/source.log"
    [ -d "$src_dir" ] || src_dir=$(ls -d "$cache"/kubernetes-1.20* | head -n 1)
}

swap_reflect2() {
    # The vendored reflect2 1.0.1 panics under Go >= 1.18 on the first
    # server-side apply; Debian's 1.0.2 does not.
    local gocode=/usr/share/gocode/src/github.com/modern-go/reflect2
    [ -d "$gocode" ] || die "missing $gocode (golang-github-modern-go-reflect2-dev)"
    grep -q 'modern-go/reflect2 v1.0.2' vendor/modules.txt && return 0
    rm -rf vendor/github.com/modern-go/reflect2
    cp -r "$gocode" vendor/github.com/modern-go/reflect2
    rm -f vendor/github.com/modern-go/reflect2/go.mod
    sed -i 's|github.com/modern-go/reflect2 v1.0.1|github.com/modern-go/reflect2 v1.0.2|g' \
        vendor/modules.txt go.mod
}

# Debian's kubectl 1.20.  When another package owns /usr/bin/kubectl (the
# Google Cloud SDK does on some machines), kubernetes-client cannot be
# installed beside it: unpack Debian's package into the cache instead.
ensure_kubectl() {
    local owner deb
    owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
    if [ "$owner" = kubernetes-client ]; then
        ln -sfn /usr/bin/kubectl "$cache/bin/kubectl"
        return 0
    fi
    [ -x "$cache/kubernetes-client/usr/bin/kubectl" ] || {
        rm -rf "$cache/kubernetes-client" "$cache/dl"
        mkdir -p "$cache/dl"
        (cd "$cache/dl" && apt-get download -qq kubernetes-client) \
            >"$cache/kubectl.log" 2>&1 \
            || die "apt-get download kubernetes-client failed: $cache/kubectl.log"
        deb=$(ls "$cache"/dl/kubernetes-client_*.deb)
        dpkg-deb -x "$deb" "$cache/kubernetes-client"
        rm -rf "$cache/dl"
    }
    ln -sfn "$cache/kubernetes-client/usr/bin/kubectl" "$cache/bin/kubectl"
}

built() {
    [ -x "$cache/bin/kube-apiserver" ] &&
    [ -x "$cache/bin/kube-controller-manager" ] &&
    [ -x "$cache/bin/kubectl" ]
}

build() {
    built && return 0
    mkdir -p "$cache/bin"
    # one builder at a time; the others wait and then find the binaries
    exec 9>"$cache/.lock"
    flock 9
    if built; then exec 9>&-; return 0; fi

    "$repo/scripts/install-deps.sh" k8s >&2
    ensure_kubectl

    if [ ! -x "$cache/bin/kube-apiserver" ] ||
       [ ! -x "$cache/bin/kube-controller-manager" ]; then
        local start=$SECONDS
        fetch_source
        log "building kube-apiserver and kube-controller-manager in $src_dir" \
            "(several minutes the first time; log: $cache/build.log)"
        (
            cd "$src_dir"
            swap_reflect2
            # GOPATH mode, as Debian's own rules build it
            export GOPATH="$src_dir/.go" CGO_ENABLED=0 HOME="$cache/home"
            mkdir -p .go/src/k8s.io "$HOME"
            [ -L .go/src/k8s.io/kubernetes ] || ln -s ../../.. .go/src/k8s.io/kubernetes
            make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" \
                >"$cache/build.log" 2>&1
        ) || die "build failed: tail $cache/build.log"
        install -m 755 "$src_dir/_output/bin/kube-apiserver" \
            "$src_dir/_output/bin/kube-controller-manager" "$cache/bin/"
        log "built in $((SECONDS - start)) s"
    fi
    exec 9>&-
}

# -- start / stop -------------------------------------------------------------

port_is_free() {
    perl -MIO::Socket::INET -e \
        'exit(IO::Socket::INET->new(Listen => 1, ReuseAddr => 1,
              LocalAddr => "127.0.0.1:$ARGV[0]") ? 0 : 1)' "$1"
}

# Below the kernel's ephemeral range, so an outgoing connection cannot take
# the port between this check and the server's bind.
free_port() {
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        port_is_free "$p" && { echo "$p"; return 0; }
    done
    die "no free port found"
}

certs() {
    local d=$1
    [ -f "$d/sa.pub" ] && return 0
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt \
            -days 30 -subj "/CN=kubenova-test-ca"
        openssl req -newkey rsa:2048 -nodes -keyout apiserver.key \
            -out apiserver.csr -subj "/CN=kube-apiserver"
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc" \
            > apiserver.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -out apiserver.crt -days 30 -extfile apiserver.ext
        openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
            -subj "/CN=kubenova-admin/O=system:masters"
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -out admin.crt -days 30
        openssl genrsa -out sa.key 2048
        openssl rsa -in sa.key -pubout -out sa.pub
        chmod 600 ./*.key
    ) >"$d/certs.log" 2>&1 || die "certificates: see $d/certs.log"
}

write_env() {
    local d=$1 port=$2
    cat > "$d/admin.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: kubenova-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $d/ca.crt
users:
- name: admin
  user:
    client-certificate: $d/admin.crt
    client-key: $d/admin.key
contexts:
- name: kubenova-test
  context: {cluster: kubenova-test, user: admin}
current-context: kubenova-test
KCFG
    cat > "$d/env" <<ENV
KN_K8S_SERVER=https://127.0.0.1:$port
KN_K8S_PORT=$port
KN_K8S_DIR=$d
KN_K8S_CA=$d/ca.crt
KN_K8S_ADMIN_CERT=$d/admin.crt
KN_K8S_ADMIN_KEY=$d/admin.key
KUBECONFIG=$d/admin.kubeconfig
KN_KUBECTL=$cache/bin/kubectl
ENV
}

admin_curl() {
    local d=$1 port=$2 path=$3
    curl -sf --max-time 2 --cacert "$d/ca.crt" --cert "$d/admin.crt" \
        --key "$d/admin.key" "https://127.0.0.1:$port$path"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_etcd() {
    local d=$1 etcd_port=$2 peer_port=$3
    setsid etcd --name kn --data-dir "$d/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "kn=http://127.0.0.1:$peer_port" \
        >>"$d/etcd.log" 2>&1 < /dev/null &
    echo $! > "$d/etcd.pid"
}

# Starts kube-apiserver and waits until it is ready; fails when it is not
# (or has exited) within 60 s.
start_apiserver() {
    local d=$1 port=$2 etcd_port=$3 i
    setsid "$cache/bin/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$etcd_port" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
        --secure-port="$port" --insecure-port=0 \
        --tls-cert-file="$d/apiserver.crt" \
        --tls-private-key-file="$d/apiserver.key" \
        --client-ca-file="$d/ca.crt" \
        --authorization-mode=RBAC \
        --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,ResourceQuota,LimitRanger \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-signing-key-file="$d/sa.key" \
        --service-account-key-file="$d/sa.pub" \
        --api-audiences=https://kubernetes.default.svc \
        --service-cluster-ip-range=10.96.0.0/16 \
        >>"$d/apiserver.log" 2>&1 < /dev/null &
    echo $! > "$d/apiserver.pid"

    for i in $(seq 1 240); do
        admin_curl "$d" "$port" /readyz >/dev/null 2>&1 && return 0
        alive "$d/apiserver.pid" && alive "$d/etcd.pid" || return 1
        sleep 0.25
    done
    return 1
}

# SIGTERM, then SIGKILL after a grace of $3 tenths of a second.  The
# apiserver gets 2 s: a graceful stop waits up to a minute for its
# long-running requests (watches), and tests lose nothing by a harder stop.
stop_one() {
    local d=$1 p=$2 grace=${3:-100} pid i
    [ -f "$d/$p.pid" ] || return 0
    pid=$(cat "$d/$p.pid")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 "$grace"); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$d/$p.pid"
}

start() {
    local d port etcd_port peer_port attempt i
    mkdir -p "$1"
    d=$(cd "$1" && pwd)
    build
    certs "$d"
    alive "$d/apiserver.pid" && die "already running in $d"

    for attempt in 1 2 3; do
        port=${KN_K8S_PORT:-$(free_port)}
        etcd_port=${KN_ETCD_PORT:-$(free_port)}
        peer_port=$(free_port)
        : >"$d/etcd.log"
        : >"$d/apiserver.log"
        start_etcd "$d" "$etcd_port" "$peer_port"
        start_apiserver "$d" "$port" "$etcd_port" && break
        stop "$d"
        # a port taken by a concurrent run between the check and the bind
        if grep -qs 'address already in use' "$d/apiserver.log" "$d/etcd.log" &&
           [ -z "${KN_K8S_PORT:-}" ] && [ "$attempt" -lt 3 ]; then
            log "port collision, retrying"
            rm -rf "$d/etcd"
            continue
        fi
        tail -n 20 "$d/etcd.log" "$d/apiserver.log" >&2 || true
        die "kube-apiserver did not become ready (logs in $d)"
    done
    echo "$port $etcd_port $peer_port" > "$d/ports"
    write_env "$d" "$port"

    start_controller_manager "$d" "$port" || {
        stop "$d"
        die "kube-controller-manager is not working: see $d/controller-manager.log"
    }
    echo "kube-apiserver https://127.0.0.1:$port ready; KUBECONFIG=$d/admin.kubeconfig"
}

# kube-controller-manager exits when the apiserver is unreachable while it
# starts up; once running it rides out apiserver restarts.  So: start it,
# then wait until its controllers visibly work: the "view" ClusterRole has
# its aggregated rules and the "default" ServiceAccount exists.
start_controller_manager() {
    local d=$1 port=$2 i
    setsid "$cache/bin/kube-controller-manager" \
        --kubeconfig="$d/admin.kubeconfig" \
        --service-account-private-key-file="$d/sa.key" \
        --root-ca-file="$d/ca.crt" \
        --controllers='*,-nodeipam,-nodelifecycle,-ttl,-cloud-node-lifecycle' \
        --leader-elect=false --bind-address=127.0.0.1 \
        --secure-port=0 --port=0 \
        >>"$d/controller-manager.log" 2>&1 < /dev/null &
    echo $! > "$d/controller-manager.pid"

    for i in $(seq 1 240); do
        alive "$d/controller-manager.pid" || return 1
        if admin_curl "$d" "$port" /apis/rbac.authorization.k8s.io/v1/clusterroles/view \
                2>/dev/null | grep -q '"configmaps"' &&
           admin_curl "$d" "$port" /api/v1/namespaces/default/serviceaccounts/default \
                >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.25
    done
    return 1
}

restart_apiserver() {
    local d port etcd_port peer_port
    d=$(cd "$1" && pwd)
    [ -f "$d/ports" ] || die "not started in $d"
    read -r port etcd_port peer_port < "$d/ports"
    stop_one "$d" apiserver 20
    start_apiserver "$d" "$port" "$etcd_port" ||
        die "kube-apiserver did not become ready again (see $d/apiserver.log)"
    if ! alive "$d/controller-manager.pid"; then
        log "kube-controller-manager had exited; starting it again"
        start_controller_manager "$d" "$port" ||
            die "kube-controller-manager is not working: see $d/controller-manager.log"
    fi
}

stop() {
    local d=$1 p
    stop_one "$d" controller-manager
    stop_one "$d" apiserver 20
    stop_one "$d" etcd
}

case "${1:-}" in
    build)   build ;;
    start)   start "${2:?usage: $0 start DIR}" ;;
    stop)    stop "${2:?usage: $0 stop DIR}" ;;
    restart-apiserver) restart_apiserver "${2:?usage: $0 restart-apiserver DIR}" ;;
    kubectl) build; echo "$cache/bin/kubectl" ;;
    *)       echo "usage: $0 build | start DIR | stop DIR | restart-apiserver DIR | kubectl" >&2
             exit 2 ;;
esac
