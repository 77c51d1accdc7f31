# Shared helpers for the local service scripts (sourced, not executed).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# Runtime state (data, logs, pid files) lives in the project, ignored by git.
STATE_DIR="${HANGWATCH_LOCAL_STATE:-$ROOT/.local}"
CACHE_DIR="${HANGWATCH_CACHE:-$HOME/.cache/hangwatch}"
mkdir -p "$STATE_DIR" "$CACHE_DIR"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# wait_port HOST PORT SECONDS: succeed once something accepts TCP connections.
wait_port() {
  local host=$1 port=$2 secs=$3 i
  for ((i = 0; i < secs * 5; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE NAME: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local pidfile=$1 name=$2 pid i
  if ! pid_alive "$pidfile"; then log "$name is not running"; rm -f "$pidfile"; return 0; fi
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 30 s; killing"; kill -9 "$pid" || true; fi
  rm -f "$pidfile"
  log "$name stopped"
}

# start_services NAME...: start each local service that is not running and stop exactly those
# when the calling script exits (keeps a developer's already-running services untouched).
start_services() {
  STARTED_SERVICES=()
  trap '_rc=$?; for _s in "${STARTED_SERVICES[@]}"; do "$HERE/$_s.sh" stop || true; done; exit $_rc' EXIT INT TERM
  local svc
  for svc in "$@"; do
    if ! "$HERE/$svc.sh" status >/dev/null 2>&1; then
      "$HERE/$svc.sh" start
      STARTED_SERVICES+=("$svc")
    fi
  done
}

# ch_config DIR TCP_PORT HTTP_PORT [SED_ARG...]: DIR/config.xml, the packaged ClickHouse server
# config with every path in DIR (folders created), the native and HTTP ports pinned, no TLS ports, the
# users file DIR/users.xml and a warnings-only log; extra sed arguments (-e EXPR) apply too.
ch_config() {
  local dir=$1 tcp=$2 http=$3
  shift 3
  mkdir -p "$dir/data/tmp" "$dir/data/user_files" "$dir/data/format_schemas" "$dir/log"
  sed -e "s#/var/lib/clickhouse/#$dir/data/#g" \
      -e "s#/var/log/clickhouse-server/#$dir/log/#g" \
      -e "/<tcp_port_secure>/d" -e "/<https_port>/d" \
      -e "s#<tcp_port>9000</tcp_port>#<tcp_port>$tcp</tcp_port>#" \
      -e "s#<http_port>8123</http_port>#<http_port>$http</http_port>#" \
      -e "s#<listen_host>::1</listen_host>##" \
      -e "s#<level>trace</level>#<level>warning</level>#" \
      -e "s#<users_config>users.xml</users_config>#<users_config>$dir/users.xml</users_config>#" \
      "$@" /etc/clickhouse-server/config.xml > "$dir/config.xml"
}

# ch_users DIR NETWORKS: DIR/users.xml with the users `default` (no password) and `grafana`
# (readonly=2: may read and change max_execution_time, never write; password from
# HANGWATCH_GRAFANA_CH_PASSWORD, default `grafana` for local stacks only), both accepted from
# NETWORKS (<ip>...</ip> elements). `grafana` may read only the dashboard databases, where
# borrower ids are masked (docs/privacy.md): hangwatch_dash, and hangwatch_test_dash for the
# tests; prefer_localhost_replica=0 sends its reads of their Distributed tables over the
# network, as `hangwatch_dashboards` (readonly, local addresses only, password in
# DIR/dashboards.password), the user of the loopback cluster ch_dashboards_cluster writes.
ch_users() {
  local dir=$1 networks=$2 gpw="${HANGWATCH_GRAFANA_CH_PASSWORD:-grafana}" rpw
  rpw=$(ch_dashboards_password "$dir")
  cat > "$dir/users.xml" <<USERS
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage><load_balancing>random</load_balancing></default>
    <!-- readonly=2: SELECT only, but SET of settings such as max_execution_time is allowed. -->
    <grafana_ro><readonly>2</readonly><max_execution_time>60</max_execution_time><prefer_localhost_replica>0</prefer_localhost_replica></grafana_ro>
    <dashboards_ro><readonly>2</readonly><max_execution_time>60</max_execution_time><enable_optimize_predicate_expression>1</enable_optimize_predicate_expression></dashboards_ro>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks>$networks</networks>
      <profile>default</profile><quota>default</quota>
    </default>
    <grafana>
      <password_sha256_hex>$(printf '%s' "$gpw" | sha256sum | cut -d' ' -f1)</password_sha256_hex>
      <networks>$networks</networks>
      <profile>grafana_ro</profile><quota>default</quota>
      <allow_databases><database>hangwatch_dash</database><database>hangwatch_test_dash</database></allow_databases>
    </grafana>
    <hangwatch_dashboards>
      <password_sha256_hex>$(printf '%s' "$rpw" | sha256sum | cut -d' ' -f1)</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>dashboards_ro</profile><quota>default</quota>
    </hangwatch_dashboards>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
USERS
}

# ch_dashboards_password DIR: the password of the loopback user `hangwatch_dashboards`, made
# once per server folder (it never leaves the server's config).
ch_dashboards_password() {
  [ -s "$1/dashboards.password" ] || { umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$1/dashboards.password"; }
  cat "$1/dashboards.password"
}

# ch_dashboards_cluster DIR TCP_PORT: DIR/config.d/dashboards.xml, the <remote_servers> entry
# `hangwatch_dashboards`: this server itself, as the read-only user `hangwatch_dashboards`.
# The dashboard database's Distributed tables read through it (migration 0015).
ch_dashboards_cluster() {
  local dir=$1 port=$2
  mkdir -p "$dir/config.d"
  cat > "$dir/config.d/dashboards.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <remote_servers>
    <hangwatch_dashboards>
      <shard><replica><host>127.0.0.1</host><port>$port</port><user>hangwatch_dashboards</user><password>$(ch_dashboards_password "$dir")</password></replica></shard>
    </hangwatch_dashboards>
  </remote_servers>
</yandex>
XML
}

# ch_server_bin: the ClickHouse server command (the Debian package's, or the bundled binary).
ch_server_bin() {
  if command -v clickhouse-server >/dev/null; then echo clickhouse-server; else echo "/usr/bin/clickhouse server"; fi
}

# log4j_config FILE LOG: a log4j 1 (reload4j) config for the Java services (Kafka, ZooKeeper):
# warnings and errors to LOG.
log4j_config() {
  cat > "$1" <<L4J
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
L4J
}

# kafka_common_properties RF MIN_ISR: the server.properties lines every local broker shares: topics
# only from the registry, the internal topics with RF replicas and MIN_ISR in-sync replicas.
kafka_common_properties() {
  cat <<PROPS
num.partitions=1
# Topics come from the project's registry, never from a typo in a producer.
auto.create.topics.enable=false
offsets.topic.replication.factor=$1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$1
transaction.state.log.min.isr=$2
# Test/dev setting: production keeps the default 3000 ms (see README, Production settings).
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=67108864
PROPS
}
