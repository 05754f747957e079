#!/usr/bin/env bash
# Install (Debian) and start a local PostgreSQL server for the study tests; prints the URL to use.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v pg_ctlcluster >/dev/null; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -n | tail -1)
pg_isready -q -h 127.0.0.1 || $SUDO pg_ctlcluster "$version" main start
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres bash -c "$1"; fi; }
as_postgres "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='gradviz'\" | grep -q 1 || psql -qc \"CREATE ROLE gradviz LOGIN PASSWORD 'gradviz'\""
as_postgres "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='gradviz_test'\" | grep -q 1 || createdb -O gradviz gradviz_test"
echo "postgresql+psycopg://gradviz:gradviz@127.0.0.1:5432/gradviz_test"
