#!/bin/sh
# MariaDB for the pilotwms stack: initialise the datadir on first start (database, user and
# password from the environment: MARIADB_DATABASE, MARIADB_USER, MARIADB_PASSWORD_FILE), then
# run mariadbd in the foreground as the mysql user on MARIADB_BIND:MARIADB_PORT.
set -eu
DATA=/var/lib/mysql
PORT=${MARIADB_PORT:-3306}
BIND=${MARIADB_BIND:-127.0.0.1}
DB=${MARIADB_DATABASE:-pilotwms}
USER_NAME=${MARIADB_USER:-pilotwms}
install -d -o mysql -g mysql -m 755 /run/mysqld
chown mysql:mysql "$DATA"
if [ ! -d "$DATA/mysql" ]; then
  PASSWORD=$(cat "${MARIADB_PASSWORD_FILE:?MARIADB_PASSWORD_FILE must name the password file}")
  mariadb-install-db --no-defaults --user=mysql --datadir="$DATA" \
    --auth-root-authentication-method=socket --skip-test-db >/dev/null
  # users for TCP clients: the services connect over 127.0.0.1 (host network)
  mariadbd --no-defaults --user=mysql --datadir="$DATA" --bootstrap --skip-networking <<SQL
FLUSH PRIVILEGES;
CREATE DATABASE IF NOT EXISTS \`$DB\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS '$USER_NAME'@'localhost' IDENTIFIED BY '$PASSWORD';
GRANT ALL PRIVILEGES ON \`$DB\`.* TO '$USER_NAME'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`$DB\`.* TO '$USER_NAME'@'localhost';
SQL
fi
exec mariadbd --no-defaults --user=mysql --datadir="$DATA" --port="$PORT" \
  --bind-address="$BIND" --socket=/run/mysqld/mysqld.sock --skip-name-resolve \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
  --innodb-buffer-pool-size="${MARIADB_BUFFER_POOL:-256M}" --max-connections=500 \
  --log-error=/dev/stderr "$@"
