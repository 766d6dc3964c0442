#!/bin/sh
# Migrates the database named by $KUBENOVA_PG (a libpq conninfo), writes
# the kubenova_postgres directive for it, and runs nginx in the foreground.
set -eu
: "${KUBENOVA_PG:?set KUBENOVA_PG to a libpq conninfo}"
until psql "$KUBENOVA_PG" -Xqc 'SELECT 1' >/dev/null 2>&1; do sleep 1; done
/usr/share/kubenova/sql/migrate "$KUBENOVA_PG"
mkdir -p /etc/kubenova/secrets
chmod 700 /etc/kubenova/secrets
[ -s /etc/kubenova/secrets/secret.key ] \
    || (umask 077; openssl rand -base64 32 > /etc/kubenova/secrets/secret.key)
[ -s /etc/kubenova/secrets/admin.token ] \
    || (umask 077; printf 'kn_admin_%s\n' "$(openssl rand -hex 24)" \
        > /etc/kubenova/secrets/admin.token)
printf 'kubenova_postgres "%s" pool=%s;\n' "$KUBENOVA_PG" "${KUBENOVA_PG_POOL:-16}" \
    > /etc/kubenova/postgres.conf
# cluster registration: a CA of this installation, and the gateway's
# certificate from it (KUBENOVA_GATEWAY_HOST names it)
s=/etc/kubenova/secrets
host=${KUBENOVA_GATEWAY_HOST:-localhost}
if [ ! -s $s/ca.key ]; then
    (umask 077
     openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
         -keyout $s/ca.key -out $s/ca.crt -days 3650 -subj /CN=kubenova-ca \
         -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign,cRLSign
     openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
         -keyout $s/gateway.key -out $s/gateway.csr -subj "/CN=$host"
     printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$host" > $s/gateway.ext
     openssl x509 -req -in $s/gateway.csr -CA $s/ca.crt -CAkey $s/ca.key \
         -CAcreateserial -days 825 -out $s/gateway.crt -extfile $s/gateway.ext) 2>/dev/null
fi
printf 'kubenova_public_url %s;\nkubenova_gateway_url %s;\nkubenova_operator_image %s;\n' \
    "${KUBENOVA_PUBLIC_URL:-http://localhost:8080}" \
    "${KUBENOVA_GATEWAY_URL:-https://$host:8081}" \
    "${KUBENOVA_OPERATOR_IMAGE:-kubenova/operator:0.1.0}" \
    > /etc/kubenova/registration.conf
exec nginx -g 'daemon off;'
