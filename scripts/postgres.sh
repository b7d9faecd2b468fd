#!/usr/bin/env bash
# Starts a local PostgreSQL 15 server for the SagaKitPostgres tests, on loopback only, with trust
# authentication, and prints its URL. Installs Debian's `postgresql` package first if it is missing
# and initialises a cluster in a data directory of its own (never touching the system's cluster).
# Idempotent: when the server already runs, it only makes sure the role and database exist.
#
#   scripts/postgres.sh          # install if needed, init, start; prints postgres://sagakit@127.0.0.1:54329/sagakit
#   scripts/postgres.sh stop     # stops the server (the data directory stays)
#   scripts/postgres.sh restart  # restarts the running server (pg_ctl restart -m fast): for the restart test
#   scripts/postgres.sh url      # prints the URL only
#
#   PGDATA_DIR=/tmp/sagakit-pg   the cluster's data directory (default)
#   PGPORT=54329                 the port on 127.0.0.1 (default)
#
# Then: SAGAKIT_POSTGRES_URL=$(scripts/postgres.sh url) swift test --traits Postgres --filter SagaKitPostgresTests
set -euo pipefail

data_dir=${PGDATA_DIR:-/tmp/sagakit-pg}
port=${PGPORT:-54329}
bin=/usr/lib/postgresql/15/bin
role=sagakit
database=sagakit
url="postgres://${role}@127.0.0.1:${port}/${database}"

# Runs a command as the `postgres` user when we are root (initdb and the server refuse to run as
# root), or as ourselves otherwise.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_postgres() {
    if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "postgres.sh: PostgreSQL 15 is not installed and installing it needs root" >&2
        exit 1
    fi
    echo "postgres.sh: installing Debian's postgresql package" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    # The package may start the system's own cluster (on port 5432); ours is separate.
}

is_running() {
    [ -f "$data_dir/PG_VERSION" ] && as_postgres "$bin/pg_ctl" -D "$data_dir" status >/dev/null 2>&1
}

stop_server() {
    if is_running; then
        as_postgres "$bin/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null
        echo "postgres.sh: stopped the server in $data_dir" >&2
    else
        echo "postgres.sh: no server runs in $data_dir" >&2
    fi
}

# Restarts the server of this data directory as an outage would: `-m fast` ends every session (their
# transactions roll back, clients see their connections closed), then the server starts again on the
# same port. Waits until it accepts connections.
restart_server() {
    if ! is_running; then
        echo "postgres.sh: no server runs in $data_dir; nothing to restart" >&2
        exit 1
    fi
    as_postgres "$bin/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -o "-p $port" -m fast -w -t 60 restart \
        >/dev/null || {
        tail -n 30 "$data_dir/server.log" >&2 || true
        exit 1
    }
    echo "postgres.sh: restarted the server in $data_dir" >&2
}

init_cluster() {
    if [ -f "$data_dir/PG_VERSION" ]; then
        return
    fi
    mkdir -p "$data_dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$data_dir"
    fi
    chmod 700 "$data_dir"
    as_postgres "$bin/initdb" -D "$data_dir" --username=postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        >"$data_dir.initdb.log" 2>&1 || {
        cat "$data_dir.initdb.log" >&2
        exit 1
    }
    # Loopback only, trust authentication (the tests connect without a password).
    cat >"$data_dir/pg_hba.conf" <<'EOF'
local   all all                trust
host    all all 127.0.0.1/32   trust
host    all all ::1/128        trust
EOF
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$data_dir'"
        echo "max_connections = 200"
        echo "fsync = on"
        echo "synchronous_commit = on"
    } >>"$data_dir/postgresql.conf"
}

start_server() {
    if is_running; then
        return
    fi
    as_postgres "$bin/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -o "-p $port" -w -t 60 start >/dev/null || {
        tail -n 30 "$data_dir/server.log" >&2 || true
        exit 1
    }
}

psql_admin() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

create_role_and_database() {
    if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != "1" ]; then
        psql_admin -c "CREATE ROLE $role LOGIN CREATEDB"
    fi
    if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'")" != "1" ]; then
        psql_admin -c "CREATE DATABASE $database OWNER $role"
    fi
}

case "${1:-start}" in
start)
    install_postgres
    init_cluster
    start_server
    create_role_and_database
    echo "$url"
    ;;
stop)
    stop_server
    ;;
restart)
    restart_server
    ;;
url)
    echo "$url"
    ;;
*)
    echo "usage: $0 [start|stop|restart|url]" >&2
    exit 2
    ;;
esac
