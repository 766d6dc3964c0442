#!/bin/bash
# "make run": a local Manager for a newcomer.  PostgreSQL in run/pgdata
# (initdb on first run), migrations applied, Debian's nginx loading the
# module with conf/nginx.conf, in the foreground until Ctrl-C.
#
#   KN_HTTP_PORT (default 8080)   KN_PG_PORT (default 15432)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
run=$repo/run
http_port=${KN_HTTP_PORT:-8080}
grpc_port=${KN_GRPC_PORT:-8081}
pg_port=${KN_PG_PORT:-15432}
conninfo="host=127.0.0.1 port=$pg_port dbname=kubenova user=postgres"

"$repo/scripts/install-deps.sh" run
so=$("$repo/scripts/build-module.sh")

mkdir -p "$run"/{logs,temp,modules} "$run/conf/secrets"
chmod 755 "$run"
chmod 700 "$run/conf/secrets"
if [ ! -s "$run/conf/secrets/secret.key" ]; then
    (umask 077; openssl rand -base64 32 > "$run/conf/secrets/secret.key")
fi
if [ ! -s "$run/conf/secrets/admin.token" ]; then
    (umask 077; printf 'kn_admin_%s\n' "$(openssl rand -hex 24)" > "$run/conf/secrets/admin.token")
fi
# kubenova_ca, and the gateway's server certificate from it (localhost)
if [ ! -s "$run/conf/secrets/ca.key" ]; then
    (umask 077; cd "$run/conf/secrets" \
     && openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout ca.key -out ca.crt -days 3650 -subj /CN=kubenova-local-ca \
            -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null \
     && openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout gateway.key -out gateway.csr -subj /CN=localhost 2>/dev/null \
     && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > gateway.ext \
     && openssl x509 -req -in gateway.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 825 -out gateway.crt -extfile gateway.ext 2>/dev/null)
fi
"$repo/scripts/pg.sh" start "$run/pgdata" "$pg_port"
"$repo/sql/migrate" "$conninfo"

ln -sf "$so" "$run/modules/ngx_http_kubenova_module.so"
ln -sfn "$repo/dashboard" "$run/dashboard"
cp "$repo/conf/kubenova-dashboard.conf" "$run/conf/"
sed -e "s|host=127.0.0.1 port=5432 dbname=kubenova user=kubenova|$conninfo|" \
    -e "s|listen 127.0.0.1:8080;|listen 127.0.0.1:$http_port;|" \
    -e "s|listen 127.0.0.1:8081 ssl http2;|listen 127.0.0.1:$grpc_port ssl http2;|" \
    -e "s|http://127.0.0.1:8080;|http://127.0.0.1:$http_port;|" \
    -e "s|https://localhost:8081;|https://localhost:$grpc_port;|" \
    -e "s|/usr/share/kubenova/deploy;|$repo/operator/deploy;|" \
    "$repo/conf/nginx.conf" > "$run/conf/nginx.conf"
[ "$(id -u)" = 0 ] && sed -i '1i user root;' "$run/conf/nginx.conf"

stop() {
    nginx -p "$run" -c conf/nginx.conf -s quit 2>/dev/null || true
    "$repo/scripts/pg.sh" stop "$run/pgdata"
}
trap stop EXIT
trap "exit 130" INT TERM

nginx -p "$run" -c conf/nginx.conf -t -q
nginx -p "$run" -c conf/nginx.conf -g "daemon off;" &
nginx_pid=$!

for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

cat <<MSG

KubeNova Manager is listening on http://127.0.0.1:$http_port
  console: http://127.0.0.1:$http_port/ (sign in with the admin token below)
  curl http://127.0.0.1:$http_port/readyz
  curl http://127.0.0.1:$http_port/metrics
  curl -H "Authorization: Bearer \$(cat $run/conf/secrets/admin.token)" \\
       http://127.0.0.1:$http_port/api/v1/tenants
Operator gateway (gRPC, mTLS): https://localhost:$grpc_port
  a cluster joins with the join_command of POST /api/v1/clusters
Admin token (bootstrap; create real admins with POST /api/v1/admins):
  $run/conf/secrets/admin.token
PostgreSQL: $conninfo   (data in $run/pgdata)
Logs: $run/logs/   Stop with Ctrl-C.

MSG

wait "$nginx_pid"
