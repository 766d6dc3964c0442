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
exec nginx -g 'daemon off;'
