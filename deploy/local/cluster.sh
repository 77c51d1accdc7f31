#!/usr/bin/env bash
# A local cluster on this one machine, each "host" in its own network namespace:
#   kafka1..3          Apache Kafka (KRaft, broker+controller), replication 3, min.insync.replicas 2
#   zk1                ZooKeeper 3.8 (from the Kafka jar set) for ClickHouse's replicated tables
#   ch-s1r1 .. ch-s2r2 ClickHouse 18.16, cluster "hangwatch": 2 shards x 2 replicas
#   worker1, worker2, sink1  empty hosts for the pipeline's processes (`exec`), e.g. failover tests
# The namespaces hang off one bridge (hwbr0, 10.231.0.1/24) in the root namespace; no host has a
# route beyond 10.231.0.0/24, so traffic stays between these namespaces. Needs root.
# Data, logs and pid files: $HANGWATCH_LOCAL_STATE/cluster (default .local/cluster).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'USAGE'
usage: deploy/local/cluster.sh COMMAND [ARGS]
  start [HOST...]     create the network and start every host's service (or only HOST's); idempotent
  stop                stop every process in the cluster's namespaces, remove namespaces, veths, bridge
  status              hosts, addresses, links, processes and ports (exit 3 if anything is down)
  check               ClickHouse replication: a ReplicatedMergeTree table ON CLUSTER, a row
                      inserted on one replica read on the other, a Distributed table over both shards
  env                 the HANGWATCH_* settings of a process on the cluster (shell exports)
  hosts               the host table: name address role (one line each)
  exec HOST CMD...    run CMD inside HOST's network namespace
  kill HOST [SIGNAL]  signal (default KILL) HOST's service, or every process of an app host
  restart HOST        kill -9 HOST's service and start it again
  cut HOST [SECONDS]  take HOST's link down (for SECONDS, then back up; without: until `heal`)
  heal HOST           bring HOST's link back up
  reset               stop, then remove the cluster's data
  test [PYTEST_ARG...]  start (unless up), check, run tests/cluster, stop what it started
Environment: HANGWATCH_LOCAL_STATE (state folder), KAFKA_HEAP_OPTS (default -Xmx384m -Xms128m),
CH_CLUSTER_NAME (default hangwatch), ZK_HEAP_OPTS (default -Xmx256m).
USAGE
}

KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
LIB="$CACHE_DIR/kafka-$KAFKA_VERSION/lib"
CDIR="$STATE_DIR/cluster"
NET=10.231.0
BRIDGE=hwbr0
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx384m -Xms128m}"
ZK_HEAP_OPTS="${ZK_HEAP_OPTS:--Xmx256m}"
CH_CLUSTER_NAME="${CH_CLUSTER_NAME:-hangwatch}"
KAFKA_CLUSTER_ID="aGFuZ3dhdGNoLWNsdXN0ZQ"  # base64 of 16 bytes, as KRaft wants
# name  address  role
HOSTS="kafka1 $NET.11 kafka
kafka2 $NET.12 kafka
kafka3 $NET.13 kafka
zk1 $NET.21 zookeeper
ch-s1r1 $NET.31 clickhouse
ch-s1r2 $NET.32 clickhouse
ch-s2r1 $NET.33 clickhouse
ch-s2r2 $NET.34 clickhouse
worker1 $NET.41 app
worker2 $NET.42 app
sink1 $NET.51 app"
KAFKA_PORT=9092
CONTROLLER_PORT=9093
ZK_PORT=2181
CH_TCP=9000
CH_HTTP=8123
CH_INTERSERVER=9009

names() { awk -v r="${1:-}" 'r == "" || $3 == r {print $1}' <<<"$HOSTS"; }
ip_of() { awk -v h="$1" '$1 == h {print $2}' <<<"$HOSTS"; }
role_of() { awk -v h="$1" '$1 == h {print $3}' <<<"$HOSTS"; }
ns() { echo "hw-$1"; }
veth() { echo "hwv-$1"; }
known() { [ -n "$(role_of "$1")" ] || { log "unknown host '$1' (see: $0 hosts)"; exit 2; }; }
kafka_id() { echo "${1#kafka}"; }
bootstrap() { local h out=(); for h in $(names kafka); do out+=("$(ip_of "$h"):$KAFKA_PORT"); done; (IFS=,; echo "${out[*]}"); }
ch_url() { echo "clickhouse://default@$(ip_of ch-s1r1):$CH_TCP"; }
pidfile() { echo "$CDIR/$1/service.pid"; }

need_root() {
  [ "$(id -u)" = 0 ] || { log "the cluster's network namespaces need root"; exit 1; }
  command -v ip >/dev/null || { log "iproute2 (ip) is required: apt-get install iproute2"; exit 1; }
}

# --- network -----------------------------------------------------------------------------

net_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    if ip -4 route show "$NET.0/24" | grep -q .; then
      log "$NET.0/24 is already routed on this machine (not by $BRIDGE); refusing to start"; exit 1
    fi
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  local h n
  for h in $(names); do
    n=$(ns "$h")
    if ! ip netns list | grep -qw "$n"; then
      ip netns add "$n"
      ip -n "$n" link set lo up
    fi
    if ! ip link show "$(veth "$h")" >/dev/null 2>&1; then
      ip link add "$(veth "$h")" type veth peer name eth0 netns "$n"
      ip -n "$n" addr add "$(ip_of "$h")/24" dev eth0
      ip -n "$n" link set eth0 up
      ip link set "$(veth "$h")" master "$BRIDGE" up
    fi
  done
}

net_down() {
  local h n pid
  for h in $(names); do
    n=$(ns "$h")
    if ip netns list | grep -qw "$n"; then
      for pid in $(ip netns pids "$n"); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$n"
    fi
    ip link del "$(veth "$h")" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# --- services ----------------------------------------------------------------------------

# launch HOST CMD...: start CMD in HOST's namespace in the background and record its pid
# (`ip netns exec` execs CMD: the pid is the service's own).
launch() {
  local h=$1 dir="$CDIR/$1"
  shift
  nohup ip netns exec "$(ns "$h")" "$@" >"$dir/server.out" 2>&1 &
  echo $! >"$(pidfile "$h")"
}

start_kafka() {
  local h=$1 dir="$CDIR/$1" id ip voters="" k
  id=$(kafka_id "$h"); ip=$(ip_of "$h")
  for k in $(names kafka); do voters="$voters${voters:+,}$(kafka_id "$k")@$(ip_of "$k"):$CONTROLLER_PORT"; done
  mkdir -p "$dir/data" "$dir/logs"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://$ip:$KAFKA_PORT,CONTROLLER://$ip:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$ip:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
default.replication.factor=3
min.insync.replicas=2
# a replica that was out of sync never becomes leader (no acknowledged record is lost)
unclean.leader.election.enable=false
$(kafka_common_properties 3 2)
# small: several brokers share 2 cores and a few GB here
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
PROPS
  log4j_config "$dir/log4j.properties" "$dir/logs/server.log"
  if [ ! -f "$dir/data/meta.properties" ]; then
    java -cp "$LIB/*" kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" -c "$dir/server.properties" \
      --ignore-formatted >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; exit 1; }
  fi
  # shellcheck disable=SC2086
  launch "$h" java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" \
    -cp "$LIB/*" kafka.Kafka "$dir/server.properties"
}

start_zookeeper() {
  local h=$1 dir="$CDIR/$1"
  mkdir -p "$dir/data" "$dir/logs"
  cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=$(ip_of "$h")
maxClientCnxns=200
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr
autopurge.purgeInterval=1
CFG
  log4j_config "$dir/log4j.properties" "$dir/logs/zookeeper.log"
  # shellcheck disable=SC2086
  launch "$h" java $ZK_HEAP_OPTS -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" \
    -Dzookeeper.admin.enableServer=false -cp "$LIB/*" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg"
}

# shard and replica of a ClickHouse host named ch-s<shard>r<replica>
ch_shard() { local s=${1#ch-s}; echo "${s%%r*}"; }
ch_replica_no() { echo "${1##*r}"; }

ch_cluster_xml() {
  local s h
  echo "  <remote_servers>"
  echo "    <$CH_CLUSTER_NAME>"
  for s in $(names clickhouse | sed 's/^ch-s\([0-9]*\)r.*/\1/' | sort -u); do
    echo "      <shard><internal_replication>true</internal_replication>"
    for h in $(names clickhouse | grep "^ch-s${s}r"); do
      echo "        <replica><host>$(ip_of "$h")</host><port>$CH_TCP</port></replica>"
    done
    echo "      </shard>"
  done
  echo "    </$CH_CLUSTER_NAME>"
  echo "  </remote_servers>"
}

start_clickhouse() {
  local h=$1 dir="$CDIR/$1" ip
  ip=$(ip_of "$h")
  # The packaged config (as deploy/local/clickhouse.sh), its test clusters, zookeeper and macros
  # includes removed, caches small; then this host's cluster part.
  ch_config "$dir" "$CH_TCP" "$CH_HTTP" \
    -e '/<remote_servers incl=/,/<\/remote_servers>/d' -e '/<zookeeper incl=/d' -e '/<macros incl=/d' \
    -e "s#<interserver_http_port>9009</interserver_http_port>#<interserver_http_port>$CH_INTERSERVER</interserver_http_port>#" \
    -e 's#<mark_cache_size>[0-9]*</mark_cache_size>#<mark_cache_size>268435456</mark_cache_size>#' \
    -e 's#<uncompressed_cache_size>[0-9]*</uncompressed_cache_size>#<uncompressed_cache_size>268435456</uncompressed_cache_size>#' \
    -e '/^<\/yandex>/d'
  {
    echo "  <listen_host>$ip</listen_host>"
    echo "  <listen_host>127.0.0.1</listen_host>"
    echo "  <interserver_http_host>$ip</interserver_http_host>"
    ch_cluster_xml
    echo "  <zookeeper><node><host>$(ip_of zk1)</host><port>$ZK_PORT</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>"
    echo "  <macros><cluster>$CH_CLUSTER_NAME</cluster><shard>$(ch_shard "$h")</shard><replica>$h</replica></macros>"
    echo "</yandex>"
  } >> "$dir/config.xml"
  ch_users "$dir" "<ip>127.0.0.1</ip><ip>::1</ip><ip>$NET.0/24</ip>"
  # shellcheck disable=SC2046
  launch "$h" $(ch_server_bin) --config-file="$dir/config.xml"
}

service_port() {
  case $(role_of "$1") in
    kafka) echo "$KAFKA_PORT" ;; zookeeper) echo "$ZK_PORT" ;; clickhouse) echo "$CH_TCP" ;; *) echo "" ;;
  esac
}

# start_host HOST: start its service unless it runs (app hosts have none); no wait.
start_host() {
  local h=$1
  mkdir -p "$CDIR/$h"
  if pid_alive "$(pidfile "$h")"; then return 0; fi
  case $(role_of "$h") in
    kafka) start_kafka "$h" ;;
    zookeeper) start_zookeeper "$h" ;;
    clickhouse) start_clickhouse "$h" ;;
    app) return 0 ;;
  esac
  log "$h: $(role_of "$h") starting on $(ip_of "$h") (pid $(cat "$(pidfile "$h")"), logs in $CDIR/$h)"
}

wait_host() {
  local h=$1 port i
  port=$(service_port "$h")
  [ -n "$port" ] || return 0
  for ((i = 0; i < 600; i++)); do
    if (exec 3<>"/dev/tcp/$(ip_of "$h")/$port") 2>/dev/null; then return 0; fi
    pid_alive "$(pidfile "$h")" || break
    sleep 0.2
  done
  log "$h did not open $(ip_of "$h"):$port ($(pid_alive "$(pidfile "$h")" && echo 'not in 120 s' || echo exited)); last output:"
  tail -n 30 "$CDIR/$h/server.out" "$CDIR/$h/log/clickhouse-server.err.log" 2>/dev/null >&2 || true
  exit 1
}

# Every broker registered with the controller quorum (topics with 3 replicas can be created).
wait_brokers() {
  local want n i
  want=$(names kafka | wc -l)
  for ((i = 0; i < 120; i++)); do
    n=$("$ROOT/.venv/bin/python" - "$(bootstrap)" 2>/dev/null <<'PY' || true
import sys
from kafka.admin import KafkaAdminClient
a = KafkaAdminClient(bootstrap_servers=sys.argv[1].split(","), client_id="cluster-sh", request_timeout_ms=5000)
print(len(a.describe_cluster()["brokers"]))
a.close()
PY
)
    [ "${n:-0}" -ge "$want" ] && return 0
    sleep 1
  done
  log "only ${n:-0} of $want brokers registered after 120 s"; exit 1
}

write_facts() {
  local h
  {
    echo "{"
    echo "  \"bridge\": \"$BRIDGE\", \"network\": \"$NET.0/24\","
    echo "  \"kafka_bootstrap\": \"$(bootstrap)\", \"clickhouse_url\": \"$(ch_url)\","
    echo "  \"clickhouse_cluster\": \"$CH_CLUSTER_NAME\", \"zookeeper\": \"$(ip_of zk1):$ZK_PORT\","
    echo "  \"hosts\": ["
    local first=1
    for h in $(names); do
      [ $first = 1 ] || echo ","
      first=0
      printf '    {"name": "%s", "namespace": "%s", "ip": "%s", "role": "%s", "port": %s}' \
        "$h" "$(ns "$h")" "$(ip_of "$h")" "$(role_of "$h")" "$(service_port "$h" | sed 's/^$/null/')"
    done
    echo
    echo "  ]"
    echo "}"
  } > "$CDIR/cluster.json"
}

start() {
  need_root
  "$HERE/kafka.sh" install
  [ -x "$ROOT/.venv/bin/python" ] || "$HERE/bootstrap.sh"
  mkdir -p "$CDIR"
  local t0=$SECONDS h hosts=("$@")
  [ ${#hosts[@]} -gt 0 ] || mapfile -t hosts < <(names)
  for h in "${hosts[@]}"; do known "$h"; done
  net_up
  for h in "${hosts[@]}"; do start_host "$h"; done
  for h in "${hosts[@]}"; do wait_host "$h"; done
  if printf '%s\n' "${hosts[@]}" | grep -q '^kafka'; then wait_brokers; fi
  write_facts
  log "up in $((SECONDS - t0)) s: Kafka $(bootstrap), ClickHouse cluster '$CH_CLUSTER_NAME' ($(names clickhouse | wc -l) servers)"
}

stop() {
  need_root
  local h
  for h in $(names); do
    if pid_alive "$(pidfile "$h")"; then stop_pid "$(pidfile "$h")" "$h" & fi
  done
  wait
  net_down
  rm -f "$CDIR"/*/service.pid "$CDIR/cluster.json"
  log "stopped: no namespace, veth or bridge of the cluster is left"
}

status() {
  local h ip port link proc bad=0
  printf '%-8s %-12s %-10s %-5s %-22s %s\n' host address role link process port
  for h in $(names); do
    ip=$(ip_of "$h"); port=$(service_port "$h")
    if ! ip netns list | grep -qw "$(ns "$h")"; then
      printf '%-8s %-12s %-10s %-5s %-22s %s\n' "$h" "$ip" "$(role_of "$h")" - "no namespace" -; bad=1; continue
    fi
    link=$(ip -br link show "$(veth "$h")" 2>/dev/null | awk '{print ($2 == "DOWN" ? "CUT" : "up")}')
    if [ "$(role_of "$h")" = app ]; then
      proc="$(ip netns pids "$(ns "$h")" | wc -l) process(es)"
    elif pid_alive "$(pidfile "$h")"; then
      proc="running (pid $(cat "$(pidfile "$h")"))"
    else
      proc="stopped"; bad=1
    fi
    if [ -n "$port" ]; then
      if wait_port "$ip" "$port" 1; then port="$ip:$port open"; else port="$ip:$port closed"; bad=1; fi
    else
      port="-"
    fi
    printf '%-8s %-12s %-10s %-5s %-22s %s\n' "$h" "$ip" "$(role_of "$h")" "${link:-?}" "$proc" "$port"
  done
  [ $bad = 0 ] || return 3
}

# chq HOST SQL: one query over HTTP on HOST's ClickHouse; the result on stdout.
chq() {
  curl -sS --fail-with-body --max-time 60 "http://$(ip_of "$1"):$CH_HTTP/" --data-binary "$2"
}

# until_eq SECONDS WANT HOST SQL: repeat the query until it returns WANT.
until_eq() {
  local secs=$1 want=$2 h=$3 sql=$4 got="" i
  for ((i = 0; i < secs * 2; i++)); do
    got=$(chq "$h" "$sql" 2>/dev/null || true)
    [ "$got" = "$want" ] && return 0
    sleep 0.5
  done
  log "check failed on $h: $sql returned '${got}', expected '$want'"; return 1
}

check() {
  local db=hw_cluster_check on="ON CLUSTER $CH_CLUSTER_NAME" h
  chq ch-s1r1 "DROP DATABASE IF EXISTS $db $on" >/dev/null
  chq ch-s1r1 "CREATE DATABASE $db $on" >/dev/null
  chq ch-s1r1 "CREATE TABLE $db.rep $on (id UInt32, s String) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/$db/rep', '{replica}') ORDER BY id" >/dev/null
  chq ch-s1r1 "CREATE TABLE $db.dist $on AS $db.rep ENGINE = Distributed($CH_CLUSTER_NAME, $db, rep, id)" >/dev/null
  # one row written on each shard's first replica is read on its second
  chq ch-s1r1 "INSERT INTO $db.rep VALUES (1001, 'written on ch-s1r1')"
  chq ch-s2r1 "INSERT INTO $db.rep VALUES (2001, 'written on ch-s2r1')"
  until_eq 30 "written on ch-s1r1" ch-s1r2 "SELECT s FROM $db.rep WHERE id = 1001"
  until_eq 30 "written on ch-s2r1" ch-s2r2 "SELECT s FROM $db.rep WHERE id = 2001"
  # 100 rows through the Distributed table (synchronously), spread by id over the 2 shards
  chq ch-s2r2 "INSERT INTO $db.dist SELECT number, 'dist' FROM system.numbers LIMIT 100 SETTINGS insert_distributed_sync = 1"
  for h in $(names clickhouse); do until_eq 30 102 "$h" "SELECT count() FROM $db.dist"; done
  until_eq 30 51 ch-s1r2 "SELECT count() FROM $db.rep"
  until_eq 30 51 ch-s2r2 "SELECT count() FROM $db.rep"
  chq ch-s1r1 "DROP DATABASE $db $on" >/dev/null
  log "ClickHouse replication OK: ReplicatedMergeTree rows reach the other replica, Distributed reads 2 shards"
}

print_env() {
  cat <<ENV
export HANGWATCH_KAFKA__BOOTSTRAP_SERVERS=$(bootstrap)
export HANGWATCH_KAFKA__REPLICATION_FACTOR=3
export HANGWATCH_KAFKA__MIN_INSYNC_REPLICAS=2
export HANGWATCH_CLICKHOUSE__URL=$(ch_url)/hangwatch
ENV
}

kill_host() {
  local h=$1 sig=${2:-KILL} pid
  known "$h"
  if [ "$(role_of "$h")" = app ]; then
    for pid in $(ip netns pids "$(ns "$h")"); do kill "-$sig" "$pid" 2>/dev/null || true; done
  elif pid_alive "$(pidfile "$h")"; then
    kill "-$sig" "$(cat "$(pidfile "$h")")"
  else
    log "$h: nothing runs"; return 0
  fi
  log "$h: sent SIG$sig"
}

cut_host() {
  local h=$1 secs=${2:-}
  known "$h"
  ip link set "$(veth "$h")" down
  log "$h: cut off"
  if [ -n "$secs" ]; then
    trap 'ip link set "$(veth "$h")" up' EXIT INT TERM
    sleep "$secs"
    ip link set "$(veth "$h")" up
    trap - EXIT INT TERM
    log "$h: back after $secs s"
  fi
}

# The cluster suite (make cluster-test): a cluster that was already up is left running.
run_tests() {
  local was_up=0 rc=0
  if [ -f "$CDIR/cluster.json" ] && status >/dev/null 2>&1; then was_up=1; fi
  if [ $was_up = 0 ]; then trap 'stop' EXIT; fi
  start
  check
  cd "$ROOT"
  HANGWATCH_CLUSTER_TESTS=1 HANGWATCH_LOCAL_STATE="$STATE_DIR" "$ROOT/.venv/bin/python" -m pytest "$@" tests/cluster || rc=$?
  return $rc
}

case "${1:-}" in
  start) shift; start "$@" ;;
  test) shift; run_tests "$@" ;;
  stop) stop ;;
  status) status ;;
  check) check ;;
  env) print_env ;;
  hosts) echo "$HOSTS" ;;
  exec) shift; known "${1:?exec HOST CMD...}"; h=$1; shift; exec ip netns exec "$(ns "$h")" "$@" ;;
  kill) kill_host "${2:?kill HOST [SIGNAL]}" "${3:-KILL}" ;;
  restart)
    known "${2:?restart HOST}"
    kill_host "$2" KILL
    for _ in $(seq 50); do pid_alive "$(pidfile "$2")" || break; sleep 0.2; done
    rm -f "$(pidfile "$2")"
    start "$2" ;;
  cut) cut_host "${2:?cut HOST [SECONDS]}" "${3:-}" ;;
  heal) known "${2:?heal HOST}"; ip link set "$(veth "$2")" up; log "$2: link up" ;;
  reset) stop; rm -rf "$CDIR"; log "cluster data removed ($CDIR)" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
