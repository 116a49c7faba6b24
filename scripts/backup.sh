#!/usr/bin/env bash
# Back up and restore a pilotwms instance on MariaDB: the database (a consistent InnoDB snapshot,
# no table locks, services keep running), the sandbox store, and the instance directory
# (configuration, token signing key, host certificate, CA).
#
#   bash scripts/backup.sh backup  --db URL --sandboxes DIR [--instance DIR] --out DIR
#   bash scripts/backup.sh restore --db URL --sandboxes DIR [--instance DIR] --from DIR
#
# URL is the SQLAlchemy URL the services use (mysql+pymysql://user:pw@host:port/db; default
# $PILOTWMS_DB); the password reaches the MariaDB tools through MYSQL_PWD, never the command line.
# Order matters: the database is dumped first, the sandbox files after, so every sandbox the dump
# refers to is in the archive (files registered later are orphans the cleanup removes).
# restore loads into the database named in URL (created if missing; it should be empty), unpacks
# the sandboxes into DIR and the instance files into --instance, then the services can start
# (run `pilotwms db upgrade` first when the software is newer than the backup).
set -euo pipefail
cmd=${1:-}; shift || true
db_url=${PILOTWMS_DB:-}; sandboxes=""; instance=""; dir=""
while (($#)); do
  case $1 in
    --db) db_url=$2; shift 2 ;;
    --sandboxes) sandboxes=$2; shift 2 ;;
    --instance) instance=$2; shift 2 ;;
    --out|--from) dir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $cmd == backup || $cmd == restore ]] && [[ -n $db_url && -n $sandboxes && -n $dir ]] || {
  sed -n '2,16p' "$0" >&2; exit 2; }

# host, port, user, password and database from the URL (URL-decoded)
read -r host port user db < <(python3 - "$db_url" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
if not u.scheme.startswith("mysql") and not u.scheme.startswith("mariadb"):
    sys.exit(f"not a MariaDB URL: {u.scheme}")
print(u.hostname or "127.0.0.1", u.port or 3306, urllib.parse.unquote(u.username or ""),
      u.path.lstrip("/"))
PY
)
MYSQL_PWD=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.unquote(urllib.parse.urlsplit(sys.argv[1]).password or ""))' "$db_url")
export MYSQL_PWD
conn=(--no-defaults --protocol=TCP -h "$host" -P "$port" -u "$user")
say() { printf '[%s] %s\n' "$(date +%T)" "$*"; }

if [[ $cmd == backup ]]; then
  mkdir -p "$dir"
  # --single-transaction: a consistent snapshot of InnoDB tables without locking them
  mariadb-dump "${conn[@]}" --single-transaction --quick --routines --triggers --events \
    --hex-blob --default-character-set=utf8mb4 "$db" | gzip >"$dir/database.sql.gz.part"
  mv "$dir/database.sql.gz.part" "$dir/database.sql.gz"
  say "database $db dumped: $(du -h "$dir/database.sql.gz" | cut -f1)"
  tar -C "$sandboxes" -czf "$dir/sandboxes.tar.gz" .
  say "sandbox store $sandboxes archived: $(du -h "$dir/sandboxes.tar.gz" | cut -f1)"
  if [[ -n $instance ]]; then
    # configuration, keys and certificates; not the data kept elsewhere (SQLite, sandboxes)
    tar -C "$instance" --exclude=./sandboxes --exclude='*.db' --exclude='*.db-*' \
      -czf "$dir/instance.tar.gz" .
    chmod 600 "$dir/instance.tar.gz"   # holds the token signing key and the host key
    say "instance $instance archived"
  fi
  (cd "$dir" && sha256sum ./*.gz >SHA256SUMS)
  say "backup complete in $dir"
else
  (cd "$dir" && sha256sum -c --quiet SHA256SUMS)
  mariadb "${conn[@]}" -e "CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4"
  gunzip -c "$dir/database.sql.gz" | mariadb "${conn[@]}" "$db"
  say "database $db restored"
  mkdir -p "$sandboxes"
  tar -C "$sandboxes" -xzf "$dir/sandboxes.tar.gz"
  say "sandbox store restored into $sandboxes"
  if [[ -n $instance && -f $dir/instance.tar.gz ]]; then
    mkdir -p "$instance"
    tar -C "$instance" -xzf "$dir/instance.tar.gz"
    say "instance files restored into $instance"
  fi
fi
