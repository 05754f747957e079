#!/usr/bin/env bash
# Start N gradviz replicas on one PostgreSQL database behind Caddy, in the foreground; Ctrl-C stops all.
# Usage: GRADVIZ_DB_URL=postgresql+psycopg://user:pass@host/db deploy/run_replicas.sh [N=2] [PROXY_PORT=8443]
# Replica k listens on 127.0.0.1:(8500+k) in study mode (GRADVIZ_MODE=study: the participant flow and the
# researcher page only); Caddy serves https://GRADVIZ_SITE:PROXY_PORT (default localhost, Caddy's internal CA; a
# public domain name gets a real certificate) on GRADVIZ_BIND (default 127.0.0.1: set the public address to
# open it). Participants use https://<site>:PROXY_PORT/study?PROLIFIC_PID=…
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2}
PORT=${2:-8443}
case "${GRADVIZ_DB_URL:-}" in
  postgresql*) ;;
  *) echo "GRADVIZ_DB_URL must name a PostgreSQL database: replicas cannot share a SQLite file safely" >&2; exit 2 ;;
esac
command -v caddy >/dev/null || { echo "caddy is missing: sudo apt-get install caddy" >&2; exit 2; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
replicas=""
for k in $(seq "$N"); do
  port=$((8500 + k))
  GRADVIZ_MODE=study .venv/bin/python -m streamlit run app.py --server.headless true --server.address 127.0.0.1 \
    --server.port "$port" --server.fileWatcherType none --browser.gatherUsageStats false \
    --server.allowedHosts "${GRADVIZ_SITE:-localhost}" --server.maxUploadSize 10 &
  pids+=($!)
  replicas="$replicas 127.0.0.1:$port"
done
export XDG_DATA_HOME=${XDG_DATA_HOME:-$PWD/.caddy} XDG_CONFIG_HOME=${XDG_CONFIG_HOME:-$PWD/.caddy}
GRADVIZ_PROXY_PORT=$PORT GRADVIZ_REPLICAS="${replicas# }" caddy run --config deploy/Caddyfile --adapter caddyfile &
pids+=($!)
echo "gradviz: $N replicas (study mode) behind https://${GRADVIZ_SITE:-localhost}:$PORT (Caddy); Ctrl-C stops them" >&2
wait
