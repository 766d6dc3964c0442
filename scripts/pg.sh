#!/bin/bash
# A throwaway PostgreSQL server on loopback, owned by the "postgres" user
# (PostgreSQL refuses to run as root).
#
#   scripts/pg.sh start   DIR PORT   initdb on first use, start, create db "kubenova"
#   scripts/pg.sh stop    DIR
#   scripts/pg.sh restart DIR
#   scripts/pg.sh kill    DIR        immediate stop (crash-like)
set -euo pipefail

cmd=${1:?usage: $0 start|stop|restart|kill DIR [PORT]}
dir=${2:?data directory}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    port=${3:?port}
    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        [ "$(id -u)" = 0 ] && chown postgres: "$dir"
        chmod 700 "$dir"
        as_pg "$bindir/initdb" -D "$dir" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 || {
            cat "$dir.initdb.log" >&2; exit 1; }
        cat >> "$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
    fi
    as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
    if ! as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -X -q -tA \
            -c "SELECT 1 FROM pg_database WHERE datname = 'kubenova'" | grep -q 1; then
        as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres kubenova
    fi
    ;;
stop)
    [ -f "$dir/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$dir" -w -m fast stop >/dev/null || true
    ;;
kill)
    [ -f "$dir/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$dir" -w -m immediate stop >/dev/null || true
    ;;
restart)
    as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -m fast restart >/dev/null
    ;;
*)
    echo "usage: $0 start|stop|restart|kill DIR [PORT]" >&2; exit 2 ;;
esac
