#!/usr/bin/env bash
# The sql service's tests and bench use a real PostgreSQL (127.0.0.1:5432) and MariaDB
# (127.0.0.1:3306), each holding Chinook in a database of toolfleet's own, toolfleet_chinook,
# readable by a read-only role toolfleet_ro (SELECT only, no password, 127.0.0.1 only).
#
# Idempotent. On a machine without the servers (Debian/Ubuntu, as root) it installs and starts
# them, and lets admin roles (postgres, root) and toolfleet_ro connect over 127.0.0.1 without a
# password, as the project's test machines do. Only 127.0.0.1 is touched.
#
# Environment: UV (the uv binary; default: uv on PATH, else .tools/bin/uv),
# TOOLFLEET_SQL_DATA (default: ../shared/data/sql next to the repository).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${TOOLFLEET_SQL_DATA:-$ROOT/../shared/data/sql}"
UV="${UV:-$(command -v uv || echo "$ROOT/.tools/bin/uv")}"
DB=toolfleet_chinook
RO=toolfleet_ro
SOURCE="$DATA/chinook.sqlite"

log() { echo "ensure-databases: $*" >&2; }
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        log "$* missing and not root: install it (apt-get install -y $*)"
        exit 1
    fi
    log "installing $* (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}
wait_for() {  # wait_for NAME COMMAND...
    local name=$1
    shift
    for _ in $(seq 100); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "$name does not answer"
    exit 1
}

[ -f "$SOURCE" ] || { log "no $SOURCE (set TOOLFLEET_SQL_DATA)"; exit 1; }
cd "$ROOT"  # uv run finds the workspace from here

# ------------------------------------------------------------------ PostgreSQL

pg() { psql -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

command -v psql >/dev/null && command -v pg_lsclusters >/dev/null || apt_install postgresql
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    log "starting PostgreSQL"
    service postgresql start >/dev/null 2>&1 || pg_ctlcluster $(pg_lsclusters -h | awk 'NR==1 {print $1, $2}') start
    wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
fi
if ! pg -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    # A fresh install asks for passwords over TCP: trust 127.0.0.1 (test machines only).
    hba="$(su postgres -c "psql -qAt -c 'SHOW hba_file'")"
    log "letting local roles connect over 127.0.0.1 without a password ($hba)"
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    su postgres -c "psql -qAt -c 'SELECT pg_reload_conf()'" >/dev/null
    wait_for "PostgreSQL (trust)" pg -d postgres -c 'SELECT 1'
fi
pg -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
    || pg -d postgres -c "CREATE DATABASE $DB"
pg -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$RO'" | grep -q 1 \
    || pg -d postgres -c "CREATE ROLE $RO LOGIN"
"$UV" run --frozen python -m toolfleet.sql.loader "$SOURCE" "postgresql+psycopg://postgres@127.0.0.1:5432/$DB"
pg -d "$DB" <<SQL
REVOKE ALL ON DATABASE $DB FROM PUBLIC;
GRANT CONNECT ON DATABASE $DB TO $RO;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO $RO;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO $RO;
ALTER ROLE $RO NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER ROLE $RO SET default_transaction_read_only = on;
SQL
log "PostgreSQL answers on 127.0.0.1:5432: $DB, read-only role $RO"

# ------------------------------------------------------------------ MariaDB

my() { mysql -h 127.0.0.1 -P 3306 -u root --batch --skip-column-names "$@"; }

command -v mysql >/dev/null && command -v mysqladmin >/dev/null || apt_install mariadb-server
if ! mysqladmin -h 127.0.0.1 -P 3306 --connect-timeout=2 ping >/dev/null 2>&1 \
    && ! mysqladmin --connect-timeout=2 ping >/dev/null 2>&1; then
    log "starting MariaDB"
    service mariadb start >/dev/null 2>&1 || service mysql start >/dev/null 2>&1 \
        || (mysqld_safe --bind-address=127.0.0.1 >/dev/null 2>&1 &)
    wait_for MariaDB mysqladmin --connect-timeout=2 ping
fi
if ! my -e 'SELECT 1' >/dev/null 2>&1; then
    # A fresh install lets root in through the Unix socket only (as the OS root).
    log "letting root connect over 127.0.0.1 without a password (test machines only)"
    mysql -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
                      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
    wait_for "MariaDB over TCP" my -e 'SELECT 1'
fi
my -e "CREATE DATABASE IF NOT EXISTS $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
"$UV" run --frozen python -m toolfleet.sql.loader "$SOURCE" "mysql+pymysql://root@127.0.0.1:3306/$DB?charset=utf8mb4"
my <<SQL
CREATE USER IF NOT EXISTS '$RO'@'127.0.0.1';
CREATE USER IF NOT EXISTS '$RO'@'localhost';
GRANT SELECT ON $DB.* TO '$RO'@'127.0.0.1';
GRANT SELECT ON $DB.* TO '$RO'@'localhost';
SQL
log "MariaDB answers on 127.0.0.1:3306: $DB, read-only role $RO"
