#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) on 127.0.0.1:9092 without Docker.
# Usage: deploy/local/kafka.sh {install|start|stop|status|restart|reset}
# The broker jars come from Maven Central (deploy/local/kafka/pom.xml) and are cached in
# ~/.cache/hangwatch/kafka-<version>/lib. Topics are NOT auto-created: `hangwatch topics create`
# creates them from schemas/topics/*.yaml.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
# Opt-in SASL_SSL listener (SCRAM-SHA-512 over TLS) beside the PLAINTEXT one, e.g. for the
# security tests (tests/integration/test_security.py): KAFKA_SASL_SSL_PORT, the broker's
# certificate and unencrypted PKCS#8 key as PEM files (KAFKA_SSL_CERT_PEM, KAFKA_SSL_KEY_PEM)
# and the SCRAM users as name=password[,name=password] (KAFKA_SCRAM_USERS), created when the
# storage is formatted (a new state dir). Unset: PLAINTEXT only, as before.
KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-}"
LIB="$CACHE_DIR/kafka-$KAFKA_VERSION/lib"
DIR="$STATE_DIR/kafka"
PIDFILE="$DIR/kafka.pid"

install() {
  if [ -f "$LIB/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch Kafka: apt-get install maven"; exit 1; }
  command -v java >/dev/null || { log "Java 17+ is required: apt-get install openjdk-17-jre-headless"; exit 1; }
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
  rm -rf "$LIB"; mkdir -p "$LIB"
  mvn -q -B -f "$HERE/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$LIB"
  touch "$LIB/.complete"
}

write_config() {
  mkdir -p "$DIR/data"
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT" protomap="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ -n "$KAFKA_SASL_SSL_PORT" ]; then
    listeners="$listeners,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"; protomap="$protomap,SASL_SSL:SASL_SSL"
  fi
  cat > "$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protomap
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/data
$(kafka_common_properties 1 1)
PROPS
  if [ -n "$KAFKA_SASL_SSL_PORT" ]; then
    : "${KAFKA_SSL_CERT_PEM:?KAFKA_SASL_SSL_PORT needs KAFKA_SSL_CERT_PEM (server certificate chain, PEM)}"
    : "${KAFKA_SSL_KEY_PEM:?KAFKA_SASL_SSL_PORT needs KAFKA_SSL_KEY_PEM (unencrypted PKCS#8 key, PEM)}"
    # A PEM keystore file: the private key, then the certificate chain (no keytool needed).
    cat "$KAFKA_SSL_KEY_PEM" "$KAFKA_SSL_CERT_PEM" > "$DIR/keystore.pem"
    cat >> "$DIR/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$DIR/keystore.pem
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
  fi
  log4j_config "$DIR/log4j.properties" '${kafka.logs.dir}/server.log'
}

start() {
  if pid_alive "$PIDFILE"; then log "already running (pid $(cat "$PIDFILE"))"; return 0; fi
  install
  write_config
  if [ ! -f "$DIR/data/meta.properties" ]; then
    log "formatting KRaft storage in $DIR/data"
    local scram=() user
    if [ -n "$KAFKA_SASL_SSL_PORT" ] && [ -n "${KAFKA_SCRAM_USERS:-}" ]; then
      IFS=, read -ra users <<<"$KAFKA_SCRAM_USERS"
      for user in "${users[@]}"; do
        scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%=*},password=${user#*=}]")
      done
    fi
    java -cp "$LIB/*" kafka.tools.StorageTool format -t "hangwatch-local-cluster-01" \
      -c "$DIR/server.properties" --ignore-formatted "${scram[@]}" >"$DIR/format.log" 2>&1 \
      || { cat "$DIR/format.log" >&2; exit 1; }
  fi
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (logs: $DIR/server.log)"
  mkdir -p "$DIR/logs"
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dkafka.logs.dir="$DIR/logs" -Dlog4j.configuration="file:$DIR/log4j.properties" \
    -cp "$LIB/*" kafka.Kafka "$DIR/server.properties" >"$DIR/server.out" 2>&1 &
  echo $! >"$PIDFILE"
  if ! wait_port 127.0.0.1 "$KAFKA_PORT" 90; then
    log "Kafka did not open port $KAFKA_PORT in 90 s; last output:"; tail -n 30 "$DIR/server.out" >&2; exit 1
  fi
  if [ -n "$KAFKA_SASL_SSL_PORT" ] && ! wait_port 127.0.0.1 "$KAFKA_SASL_SSL_PORT" 30; then
    log "Kafka did not open its SASL_SSL port $KAFKA_SASL_SSL_PORT; last output:"; tail -n 30 "$DIR/server.out" >&2; exit 1
  fi
  log "Kafka is up (pid $(cat "$PIDFILE"))"
}

status() {
  if pid_alive "$PIDFILE" && wait_port 127.0.0.1 "$KAFKA_PORT" 1; then
    echo "kafka: running (pid $(cat "$PIDFILE"), 127.0.0.1:$KAFKA_PORT)"
  else
    echo "kafka: stopped"; return 3
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pid "$PIDFILE" kafka ;;
  restart) stop_pid "$PIDFILE" kafka; start ;;
  status) status ;;
  # the workers' local borrower store (RocksDB) is derived from the topics: it goes with them
  reset) stop_pid "$PIDFILE" kafka; rm -rf "$DIR" "$ROOT/.local/faust"; log "data removed (and .local/faust)" ;;
  *) echo "usage: $0 {install|start|stop|restart|status|reset}" >&2; exit 2 ;;
esac
