#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for tests and CI (Debian, run as root).
#   .ci/postgres.sh          install if needed, init, start; prints the DSN on stdout
#   .ci/postgres.sh stop     stop the cluster (data stays; start again reuses it)
#   .ci/postgres.sh status   exit 0 if the server answers
# Idempotent: running start twice is harmless. Listens on 127.0.0.1 only, trust auth.
set -euo pipefail

PG_DIR="${LOGSTREAM_PG_DIR:-/tmp/logstream-pg}"
PG_PORT="${LOGSTREAM_PG_PORT:-55432}"
PG_DB="logstream_test"
PG_USER="postgres"
DATA="$PG_DIR/data"
LOG="$PG_DIR/server.log"
DSN="postgresql://${PG_USER}@127.0.0.1:${PG_PORT}/${PG_DB}"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    # A directory holding pg_ctl and initdb: PATH first, then Debian's versioned layout.
    local pgctl
    if pgctl="$(command -v pg_ctl 2>/dev/null)" && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$pgctl")"
        return 0
    fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/pg_ctl" && -x "$dir/initdb" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

as_postgres() {
    # initdb and postgres refuse to run as root.
    if [[ "$(id -u)" -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$PG_USER" -- "$@"
    else
        su "$PG_USER" -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

ensure_installed() {
    if BINDIR="$(find_bindir)"; then
        return 0
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        log "PostgreSQL is not installed and installing needs root"
        exit 1
    fi
    log "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
    # The package starts Debian's own cluster on 5432; it does not disturb ours.
    BINDIR="$(find_bindir)" || { log "pg_ctl not found after install"; exit 1; }
}

ensure_user() {
    if ! id "$PG_USER" >/dev/null 2>&1; then
        log "creating system user $PG_USER"
        useradd --system --home-dir "$PG_DIR" --shell /bin/sh "$PG_USER"
    fi
}

is_up() {
    "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null
}

start() {
    ensure_installed
    ensure_user
    mkdir -p "$PG_DIR"
    chown "$PG_USER" "$PG_DIR"
    chmod 700 "$PG_DIR"
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        log "initdb in $DATA"
        as_postgres "$BINDIR/initdb" -D "$DATA" -U "$PG_USER" --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >&2 \
            || as_postgres "$BINDIR/initdb" -D "$DATA" -U "$PG_USER" --auth=trust \
                --encoding=UTF8 --no-locale >&2
    fi
    if ! as_postgres "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        log "starting on 127.0.0.1:$PG_PORT (log: $LOG)"
        # Sockets go into PG_DIR so no /var/run/postgresql is needed; fsync stays on.
        as_postgres "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200" >&2
    fi
    for _ in $(seq 1 60); do
        is_up && break
        sleep 0.5
    done
    is_up || { log "server did not answer on port $PG_PORT; see $LOG"; exit 1; }
    if ! as_postgres "$BINDIR/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
        as_postgres "$BINDIR/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
    fi
    echo "$DSN"
}

stop() {
    BINDIR="$(find_bindir)" || { log "PostgreSQL is not installed; nothing to stop"; return 0; }
    if [[ -f "$DATA/PG_VERSION" ]] && as_postgres "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_postgres "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2
    else
        log "not running"
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) BINDIR="$(find_bindir)" && is_up ;;
    *) log "usage: $0 [start|stop|status]"; exit 2 ;;
esac
