#!/bin/sh
# Minimal stand-in for `prisma migrate deploy` (Prisma cannot fetch its engines
# offline). Applies prisma/migrations/*/migration.sql in name order, each in one
# transaction together with its bookkeeping row in _tj_migrations.
# DATABASE_URL comes from the environment, else from ./.env. It is never printed.
set -eu

cd "$(dirname "$0")/.."

# Print the value of KEY from a dotenv file (KEY=VALUE, optional `export `,
# optional single/double quotes, # comments). Prints nothing if absent.
dotenv_get() {
    awk -v key="$1" '
        { sub(/\r$/, "") }
        /^[ \t]*(#|$)/ { next }
        {
            line = $0
            sub(/^[ \t]+/, "", line)
            sub(/^export[ \t]+/, "", line)
            eq = index(line, "=")
            if (eq == 0) next
            k = substr(line, 1, eq - 1); gsub(/[ \t]+$/, "", k)
            if (k != key) next
            v = substr(line, eq + 1)
            sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
            q = substr(v, 1, 1)
            if ((q == "\"" || q == "\047") && length(v) >= 2 && substr(v, length(v), 1) == q) {
                v = substr(v, 2, length(v) - 2)
            } else {
                sub(/[ \t]+#.*$/, "", v)
            }
            val = v; found = 1
        }
        END { if (found) printf "%s", val }
    ' "$2"
}

if [ -z "${DATABASE_URL:-}" ]; then
    if [ -f .env ]; then
        DATABASE_URL=$(dotenv_get DATABASE_URL .env)
    fi
fi
if [ -z "${DATABASE_URL:-}" ]; then
    echo "migrate: DATABASE_URL is not set (environment or .env)" >&2
    exit 1
fi
# Prisma accepts its own query parameters in the URL; psql (libpq) rejects them.
DATABASE_URL=$(printf '%s' "$DATABASE_URL" | sed -E \
    -e 's/([?&])(schema|connection_limit|pool_timeout|pgbouncer|socket_timeout|statement_cache_size|sslaccept|sslidentity)=[^&]*/\1/g' \
    -e 's/&&+/\&/g' -e 's/\?&/?/' -e 's/[?&]$//')

# The password is never on psql's command line (ps shows it) nor in its environment: libpq
# reads it from a private PGPASSFILE, removed on exit; the URL psql is given holds none.
command -v node >/dev/null 2>&1 || { echo "migrate: node not found" >&2; exit 1; }
work=$(mktemp -d)
tmp="$work/migration.sql"
trap 'rm -rf "$work"' EXIT INT TERM
CONN=$(printf '%s' "$DATABASE_URL" | node -e '
  const fs = require("fs");
  const u = new URL(fs.readFileSync(0, "utf8").trim());
  const pw = decodeURIComponent(u.password);
  u.password = "";
  const esc = (s) => s.replace(/\\/g, "\\\\").replace(/:/g, "\\:");
  fs.writeFileSync(process.argv[1], "*:*:*:*:" + esc(pw) + "\n", { mode: 0o600 });
  process.stdout.write(u.toString());
' "$work/pgpass") || { echo "migrate: DATABASE_URL is not a URL" >&2; exit 1; }
PGPASSFILE="$work/pgpass"
export PGPASSFILE
unset DATABASE_URL

command -v psql >/dev/null 2>&1 || { echo "migrate: psql not found" >&2; exit 1; }

PSQL_OPTS="-v ON_ERROR_STOP=1 -X -q"
# Keep IF NOT EXISTS notices out of the deploy log.
PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
export PGOPTIONS

psql "$CONN" $PSQL_OPTS -c \
    "CREATE TABLE IF NOT EXISTS _tj_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())" \
    >/dev/null

applied=$(psql "$CONN" $PSQL_OPTS -At -c "SELECT name FROM _tj_migrations ORDER BY name")


count=0
# Glob expansion is sorted (POSIX: collating order); names start with a timestamp.
for sql in prisma/migrations/*/migration.sql; do
    [ -f "$sql" ] || continue
    name=$(basename "$(dirname "$sql")")
    if printf '%s\n' "$applied" | grep -qxF -- "$name"; then
        continue
    fi
    case "$name" in
        *"'"*) echo "migrate: bad migration name: $name" >&2; exit 1 ;;
    esac
    {
        cat "$sql"
        printf '\n;\nINSERT INTO _tj_migrations (name) VALUES (%s);\n' "'$name'"
    } >"$tmp"
    if ! psql "$CONN" $PSQL_OPTS --single-transaction -f "$tmp" >/dev/null; then
        echo "migrate: migration $name failed" >&2
        exit 1
    fi
    echo "Applied migration $name"
    count=$((count + 1))
done

if [ "$count" -eq 0 ]; then
    echo "No pending migrations"
fi
