#!/bin/sh
# One-shot: bring Temporal's PostgreSQL schemas to the version this server image expects.
# Safe to rerun on every `docker compose up`: setup-schema skips a database already past 0.0
# and update-schema applies only the versions not yet recorded.
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
# temporal-sql-tool reads SQL_PASSWORD; the server's own variable is POSTGRES_PWD.
SQL_PASSWORD="${SQL_PASSWORD:-${POSTGRES_PWD:-}}"
: "${SQL_PASSWORD:?POSTGRES_PWD is required (deploy/infra.env)}"
export SQL_PASSWORD
DB_PORT="${DB_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

for db in temporal temporal_visibility; do
    case "$db" in
        temporal) dir="$SCHEMA_ROOT/temporal/versioned" ;;
        *) dir="$SCHEMA_ROOT/visibility/versioned" ;;
    esac
    echo "schema: $db"
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" \
        --db "$db" setup-schema -v 0.0
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" \
        --db "$db" update-schema -d "$dir"
done
echo "schema: done"
