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
ETCD_PORT=${GYRO_TEST_ETCD_PORT:-12379}                  # single node (peer port +1)
ETCD_CLUSTER_BASE=${GYRO_TEST_ETCD_CLUSTER_BASE:-12381}  # 3 nodes: clients 12381/12383/12385, peers +1
ZK_PORT=${GYRO_TEST_ZK_PORT:-12181}
SSHD_PORT=${GYRO_TEST_SSHD_PORT:-12222}                # SFTP backend tests (backup)
NATS_BASE=${GYRO_TEST_NATS_BASE:-14222}                # JetStream, 3 nodes: clients 14222-14224, routes +2000
MYSQL_PORT=${GYRO_TEST_MYSQL_PORT:-13306}              # MariaDB (monitor's MySQL check)

PACKAGES=(gcc python3-dev nginx-light haproxy wrk openssl redis-server prometheus prometheus-alertmanager etcd-server etcd-client zookeeper openssh-server restic borgbackup nats-server mariadb-server)

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

start_etcd_node() { # name client_port peer_port initial_cluster dir
  mkdir -p "$5"
  if [ -f "$5/etcd.pid" ] && kill -0 "$(cat "$5/etcd.pid")" 2>/dev/null; then return 0; fi
  setsid etcd --name "$1" --data-dir "$5/data" \
    --listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
    --listen-peer-urls "http://127.0.0.1:$3" --initial-advertise-peer-urls "http://127.0.0.1:$3" \
    --initial-cluster "$4" --initial-cluster-token "gyro-$(printf %s "$4" | cksum | cut -d" " -f1)" --initial-cluster-state new \
    --heartbeat-interval 100 --election-timeout 1000 >"$5/etcd.log" 2>&1 &
  echo $! >"$5/etcd.pid"
}

start_etcd() {
  start_etcd_node solo "$ETCD_PORT" $((ETCD_PORT + 1)) "solo=http://127.0.0.1:$((ETCD_PORT + 1))" "$DIR/etcd"
  local cluster="" i
  for i in 0 1 2; do cluster+="${cluster:+,}e$i=http://127.0.0.1:$((ETCD_CLUSTER_BASE + 2 * i + 1))"; done
  for i in 0 1 2; do
    start_etcd_node "e$i" $((ETCD_CLUSTER_BASE + 2 * i)) $((ETCD_CLUSTER_BASE + 2 * i + 1)) "$cluster" "$DIR/etcd-cluster/e$i"
  done
  wait_port 127.0.0.1 "$ETCD_PORT" 30
  for i in 0 1 2; do wait_port 127.0.0.1 $((ETCD_CLUSTER_BASE + 2 * i)) 30; done
  log "etcd on 127.0.0.1:$ETCD_PORT, 3-node cluster on 127.0.0.1:$ETCD_CLUSTER_BASE/+2/+4"
}

stop_etcd() {
  stop_pidfile "$DIR/etcd/etcd.pid"
  for i in 0 1 2; do stop_pidfile "$DIR/etcd-cluster/e$i/etcd.pid"; done
}

start_zookeeper() { # standalone, small heap, 500 ms ticks so 1 s sessions are allowed
  local d="$DIR/zookeeper"
  mkdir -p "$d/data"
  if [ -f "$d/zk.pid" ] && kill -0 "$(cat "$d/zk.pid")" 2>/dev/null; then return 0; fi
  printf '%s\n' "tickTime=500" "dataDir=$d/data" "clientPort=$ZK_PORT" "clientPortAddress=127.0.0.1" \
    "minSessionTimeout=1000" "maxSessionTimeout=30000" "admin.enableServer=false" \
    "4lw.commands.whitelist=ruok,stat,srvr" >"$d/zoo.cfg"
  setsid java -Xmx128m -Xms16m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dzookeeper.root.logger=WARN,CONSOLE -Dzookeeper.log.dir="$d" \
    -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar" \
    org.apache.zookeeper.server.ZooKeeperServerMain "$d/zoo.cfg" >"$d/zk.log" 2>&1 &
  echo $! >"$d/zk.pid"
  wait_port 127.0.0.1 "$ZK_PORT" 60
  log "zookeeper on 127.0.0.1:$ZK_PORT"
}

start_sshd() { # an sshd for the SFTP backup backend: generated host key, one client key, loopback only
  local d="$DIR/sshd"
  mkdir -p "$d/repos" && chmod 700 "$d"
  if [ -f "$d/sshd.pid" ] && kill -0 "$(cat "$d/sshd.pid")" 2>/dev/null; then return 0; fi
  [ -f "$d/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C gyro-test-host -f "$d/host_ed25519"
  [ -f "$d/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C gyro-test-client -f "$d/client_ed25519"
  cp "$d/client_ed25519.pub" "$d/authorized_keys" && chmod 600 "$d/authorized_keys"
  printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1,2 "$d/host_ed25519.pub")" >"$d/known_hosts"
  printf '%s\n' "Port $SSHD_PORT" "ListenAddress 127.0.0.1" "HostKey $d/host_ed25519" "PidFile $d/sshd.pid" \
    "AuthorizedKeysFile $d/authorized_keys" "AllowUsers $(id -un)" "PasswordAuthentication no" \
    "KbdInteractiveAuthentication no" "PermitRootLogin prohibit-password" "UsePAM no" "StrictModes no" \
    "Subsystem sftp internal-sftp" "LogLevel ERROR" >"$d/sshd_config"
  [ "$(id -u)" -ne 0 ] || mkdir -p /run/sshd  # privilege separation directory sshd wants as root
  /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
  wait_port 127.0.0.1 "$SSHD_PORT" 10
  log "sshd (SFTP) on 127.0.0.1:$SSHD_PORT"
}

# NATS JetStream, 3 nodes (logs replication). Debian's nats-server is 2.9.x: no `sync_interval`
# (2.10+), so a node fsyncs its stream files on its own schedule (about every 2 minutes); an
# acknowledgement means the message is in the memory/page cache of a quorum (2 of 3) of nodes.
nats_conf() { # n
  local n=$1 port=$((NATS_BASE + $1 - 1)) routes=""
  for i in 1 2 3; do routes="$routes${routes:+, }nats-route://127.0.0.1:$((NATS_BASE + 2000 + i - 1))"; done
  cat <<CONF
server_name: n$n
listen: 127.0.0.1:$port
pid_file: "$DIR/nats/n$n/nats.pid"
jetstream { store_dir: "$DIR/nats/n$n/store", max_memory_store: 64MB, max_file_store: 1GB }
cluster { name: gyro, listen: 127.0.0.1:$((NATS_BASE + 2000 + n - 1)), routes: [$routes] }
CONF
}

start_nats() {
  for n in 1 2 3; do
    mkdir -p "$DIR/nats/n$n"
    if [ -f "$DIR/nats/n$n/nats.pid" ] && kill -0 "$(cat "$DIR/nats/n$n/nats.pid")" 2>/dev/null; then continue; fi
    nats_conf "$n" > "$DIR/nats/n$n/nats.conf"
    setsid nats-server -c "$DIR/nats/n$n/nats.conf" -l "$DIR/nats/n$n/nats.log" </dev/null >/dev/null 2>&1 &
  done
  for n in 1 2 3; do wait_port 127.0.0.1 $((NATS_BASE + n - 1)) 20; done
  log "nats jetstream cluster on 127.0.0.1:$NATS_BASE-$((NATS_BASE + 2))"
}

stop_nats() {
  for n in 1 2 3; do stop_pidfile "$DIR/nats/n$n/nats.pid"; done
}

# MariaDB for the monitor's MySQL check: own datadir and socket under $DIR, loopback TCP only, a
# password user `gyro` (root keeps socket-only access). As root the server runs as the mysql user.
start_mysql() {
  local d="$DIR/mysql" as=()
  mkdir -p "$d"
  if [ -f "$d/mysql.pid" ] && kill -0 "$(cat "$d/mysql.pid")" 2>/dev/null; then return 0; fi
  [ "$(id -u)" -ne 0 ] || { chown -R mysql:mysql "$d"; as=(--user=mysql); }
  if [ ! -d "$d/data/mysql" ]; then
    mariadb-install-db --no-defaults "${as[@]}" --datadir="$d/data" --auth-root-authentication-method=normal \
      --skip-test-db >"$d/install.log" 2>&1 || { log "mariadb-install-db failed, see $d/install.log"; return 1; }
  fi
  setsid mariadbd --no-defaults "${as[@]}" --datadir="$d/data" --socket="$d/mysql.sock" --pid-file="$d/mysql.pid" \
    --port="$MYSQL_PORT" --bind-address=127.0.0.1 --skip-name-resolve --log-error="$d/mysql.log" \
    --innodb-buffer-pool-size=16M --performance-schema=OFF </dev/null >/dev/null 2>&1 &
  wait_port 127.0.0.1 "$MYSQL_PORT" 60
  mariadb --no-defaults -S "$d/mysql.sock" -uroot -e \
    "CREATE USER IF NOT EXISTS 'gyro'@'127.0.0.1' IDENTIFIED BY 'gyro-test'; GRANT PROCESS ON *.* TO 'gyro'@'127.0.0.1';"
  log "mariadb on 127.0.0.1:$MYSQL_PORT"
}

stop_mysql() {
  stop_pidfile "$DIR/mysql/mysql.pid"
}

start() {
  mkdir -p "$DIR"
  start_redis
  start_etcd
  start_zookeeper
  start_sshd
  start_nats
  start_mysql
  print_env > "$DIR/env"
}

stop() {
  stop_pidfile "$DIR/redis/redis.pid"
  stop_etcd
  stop_pidfile "$DIR/zookeeper/zk.pid"
  stop_pidfile "$DIR/sshd/sshd.pid"
  stop_nats
  stop_mysql
  rm -rf "$DIR"
  log "stopped"
}

status() {
  for spec in "redis:127.0.0.1:$REDIS_PORT" "etcd:127.0.0.1:$ETCD_PORT" \
    "etcd-cluster:127.0.0.1:$ETCD_CLUSTER_BASE" "zookeeper:127.0.0.1:$ZK_PORT" "sshd:127.0.0.1:$SSHD_PORT" \
    "nats:127.0.0.1:$NATS_BASE" "nats2:127.0.0.1:$((NATS_BASE + 1))" "nats3:127.0.0.1:$((NATS_BASE + 2))" "mysql:127.0.0.1:$MYSQL_PORT"; do
    IFS=: read -r name host port <<<"$spec"
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then echo "$name up $host:$port"; else echo "$name down $host:$port"; fi
  done
}

print_env() {
  echo "export GYRO_TEST_NATS_URLS=nats://127.0.0.1:$NATS_BASE,nats://127.0.0.1:$((NATS_BASE + 1)),nats://127.0.0.1:$((NATS_BASE + 2))"
  echo "export GYRO_TEST_NATS_DIR=$DIR/nats"
  echo "export GYRO_TEST_ETCD_ENDPOINTS=127.0.0.1:$ETCD_PORT"
  echo "export GYRO_TEST_ETCD_CLUSTER=127.0.0.1:$ETCD_CLUSTER_BASE,127.0.0.1:$((ETCD_CLUSTER_BASE + 2)),127.0.0.1:$((ETCD_CLUSTER_BASE + 4))"
  echo "export GYRO_TEST_ZK_HOSTS=127.0.0.1:$ZK_PORT"
  echo "export GYRO_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
  echo "export GYRO_TEST_MYSQL_URL=mysql://gyro:gyro-test@127.0.0.1:$MYSQL_PORT/"
  echo "export GYRO_TEST_SFTP_URL='sftp://$(id -un)@127.0.0.1:$SSHD_PORT$DIR/sshd/repos?key=$DIR/sshd/client_ed25519&known_hosts=$DIR/sshd/known_hosts'"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
