#!/usr/bin/env bash
# Install, start and stop the real servers gyroscope's tests and benchmarks use.
#
#   scripts/services.sh install   Debian packages (idempotent; runs apt-get update once)
#   scripts/services.sh start     start every server on loopback, data in a temp dir (idempotent)
#   scripts/services.sh stop      stop them and remove their data
#   scripts/services.sh status    one line per server
#   scripts/services.sh env       the environment variables tests read (GYRO_TEST_*), for `eval`
#
# Servers listen on fixed loopback ports chosen away from the usual defaults, so a developer's own
# Redis or etcd is never touched. Data lives under $GYRO_SERVICES_DIR (default /tmp/gyroscope-services).
set -euo pipefail

DIR=${GYRO_SERVICES_DIR:-/tmp/gyroscope-services}
REDIS_PORT=${GYRO_TEST_REDIS_PORT:-16379}

PACKAGES=(nginx-light haproxy wrk redis-server prometheus prometheus-alertmanager)

log() { printf 'services: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then echo sudo; else log "need root to install packages"; exit 1; fi
  fi
}

install() {
  local missing=() sudo
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && { log "all packages installed"; return 0; }
  sudo=$(need_root)
  log "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

wait_port() { # host port seconds
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && { log "timed out waiting for $1:$2"; return 1; }
    sleep 0.1
  done
}

start_redis() {
  mkdir -p "$DIR/redis"
  if [ -f "$DIR/redis/redis.pid" ] && kill -0 "$(cat "$DIR/redis/redis.pid")" 2>/dev/null; then return 0; fi
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" --daemonize yes \
    --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log" \
    --appendonly yes --appendfsync always --save '' >/dev/null
  wait_port 127.0.0.1 "$REDIS_PORT" 10
  log "redis on 127.0.0.1:$REDIS_PORT"
}

stop_pidfile() { # pidfile
  if [ -f "$1" ]; then
    local pid; pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
  fi
}

start() {
  mkdir -p "$DIR"
  start_redis
  print_env > "$DIR/env"
}

stop() {
  stop_pidfile "$DIR/redis/redis.pid"
  rm -rf "$DIR"
  log "stopped"
}

status() {
  for spec in "redis:127.0.0.1:$REDIS_PORT"; do
    IFS=: read -r name host port <<<"$spec"
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then echo "$name up $host:$port"; else echo "$name down $host:$port"; fi
  done
}

print_env() {
  echo "export GYRO_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
