# Shared by the bench/ scripts: a throwaway PostgreSQL and a Manager nginx
# on loopback, wrk and pgbench helpers.  Source it; call bench_setup.
#
#   BENCH_CONNECTIONS (64)  BENCH_SECONDS (10)  BENCH_WORKERS (auto)
#   BENCH_POOL (16, connections per worker)
#
# A script may set, before bench_setup: bench_main_conf (main context),
# bench_events_conf (default "worker_connections 4096;"), bench_http_conf
# (more of the http block, e.g. another server) and bench_pg_params (more
# kubenova_postgres parameters, e.g. "queue_timeout=60s").
#
# The Operator gateway speaks mTLS only: a script that needs it calls
# bench_gateway PORT before bench_setup (a test CA in $pki, the gateway's
# server block in bench_http_conf), then bench_identities to issue the
# clusters' client certificates.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
conns=${BENCH_CONNECTIONS:-64}
secs=${BENCH_SECONDS:-10}
workers=${BENCH_WORKERS:-auto}
pool=${BENCH_POOL:-16}

free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0")->sockport'
}

# nginx is stopped by its pid, not by "nginx -s stop": that parses the
# configuration again, and fails once files it names (the bench PKI) are gone
bench_cleanup() {
    local pid

    if [ -f "$tmp/ngx/logs/nginx.pid" ]; then
        pid=$(cat "$tmp/ngx/logs/nginx.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    [ -z "${pki:-}" ] || rm -rf "$pki"
    "$repo/scripts/pg.sh" stop "$tmp/pg" || true
    rm -rf "$tmp"
}

bench_setup() {
    "$repo/scripts/install-deps.sh" test
    command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    so=$("$repo/scripts/build-module.sh")
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

    tmp=$(mktemp -d /tmp/kubenova-bench.XXXXXX)
    chmod 755 "$tmp"
    trap bench_cleanup EXIT
    pg_port=$(free_port)
    http_port=$(free_port)
    base="http://127.0.0.1:$http_port"
    conninfo="host=127.0.0.1 port=$pg_port dbname=kubenova user=postgres"
    admin_token="kn_admin_$(openssl rand -hex 24)"
    printf '%s\n' "$admin_token" > "$tmp/admin.token"

    "$repo/scripts/pg.sh" start "$tmp/pg" "$pg_port"
    "$repo/sql/migrate" "$conninfo" >/dev/null

    mkdir -p "$tmp/ngx/conf" "$tmp/ngx/logs"
    cat > "$tmp/ngx/conf/nginx.conf" <<CONF
load_module $so;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes $workers;
error_log logs/error.log warn;
pid logs/nginx.pid;
${bench_main_conf:-}
events { ${bench_events_conf:-worker_connections 4096;} }
http {
    access_log off;
    client_body_temp_path $tmp/ngx/body;
    client_body_buffer_size 1m;
    kubenova_postgres "$conninfo" pool=$pool queue=1024 ${bench_pg_params:-};
    kubenova_admin_token_file $tmp/admin.token;
    server {
        listen 127.0.0.1:$http_port;
        location = /readyz { kubenova_readyz; }
        location = /return200 { return 200 "ok\n"; }
        location /api/ { kubenova_api; }
    }
${bench_http_conf:-}
}
CONF
    nginx -p "$tmp/ngx" -c conf/nginx.conf
    for _ in $(seq 50); do
        curl -fsS "$base/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench: the Manager did not become ready" >&2
    exit 1
}

# wrk_rps URL [wrk args...]: requests per second, after a 2 s warm-up;
# fails on any non-2xx answer
wrk_rps() {
    local url=$1; shift
    # BENCH_NONCE lets a script that creates objects use fresh names per run
    BENCH_NONCE=warmup wrk -t 2 -c "$conns" -d 2s "$@" "$url" >/dev/null
    BENCH_NONCE=run wrk -t 2 -c "$conns" -d "${secs}s" "$@" "$url" | tee "$tmp/wrk.out" >&2
    if grep -q "Non-2xx" "$tmp/wrk.out"; then
        echo "bench: non-2xx answers from $url" >&2
        exit 1
    fi
    awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out"
}

# pgbench -S at the same concurrency against the same server
pgbench_select_tps() {
    "$bindir/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres -i -q -s 1 kubenova >/dev/null 2>&1
    "$bindir/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres -S -M extended \
        -c "$conns" -j 2 -T 2 kubenova >/dev/null 2>&1
    "$bindir/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres -S -M extended \
        -c "$conns" -j 2 -T "$secs" kubenova 2>/dev/null \
        | awk '/^tps = / { print $3; exit }'
}

admin() {
    # admin METHOD PATH [JSON]
    curl -fsS -X "$1" -H "Authorization: Bearer $admin_token" \
        -H "Content-Type: application/json" ${3:+--data "$3"} "$base$2" >/dev/null
}

# bench_gateway PORT [DIRECTIVES]: a CA for kubenova_ca and the gateway's
# server certificate (localhost) in $pki, and the gateway on PORT (TLS,
# HTTP/2, client certificates of that CA) in bench_http_conf, with
# DIRECTIVES in its location, as t/lib/KubeNova/Gateway.pm configures it
# (registration needs both URLs; the public one only goes in answers the
# benches do not use, and the API's port is not chosen yet)
bench_gateway() {
    pki=$(mktemp -d /tmp/kubenova-bench-pki.XXXXXX)
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 2 -subj /CN=bench-ca \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$pki/gw.key" -out "$pki/gw.csr" -subj /CN=localhost 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
        > "$pki/gw.ext"
    openssl x509 -req -in "$pki/gw.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 2 -extfile "$pki/gw.ext" -out "$pki/gw.crt" 2>/dev/null
    bench_http_conf="    kubenova_ca $pki/ca.crt $pki/ca.key;
    kubenova_gateway_url https://localhost:$1;
    kubenova_public_url http://127.0.0.1;
    server {
        listen 127.0.0.1:$1 ssl http2;
        ssl_certificate $pki/gw.crt;
        ssl_certificate_key $pki/gw.key;
        ssl_client_certificate $pki/ca.crt;
        ssl_verify_client optional_no_ca;
        location /kubenova.v1.OperatorGateway/ {
            kubenova_operator_gateway;
            ${2:-}
        }
    }"
}

# bench_identities [identities.py names: NAME... or --prefix P --first I
# --count N]: client certificates from $pki's CA in $pki/identities
# (tls.key, NAME.crt), each recorded in cluster_certificates as the
# register endpoint records it
bench_identities() {
    /usr/bin/python3 "$repo/bench/identities.py" --ca-cert "$pki/ca.crt" \
        --ca-key "$pki/ca.key" --out "$pki/identities" "$@" > "$pki/identities.csv"
    psql "$conninfo" -XqtA -v ON_ERROR_STOP=1 \
        -c "\\copy cluster_certificates (serial, cluster, not_after) FROM '$pki/identities.csv' WITH (FORMAT csv)"
}
