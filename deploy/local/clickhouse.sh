#!/usr/bin/env bash
# ClickHouse server (Debian's clickhouse-server package) as a plain background process with
# a project-local config and data folder: 127.0.0.1, native 9000, HTTP 8123.
# Usage: deploy/local/clickhouse.sh {install|start|stop|status|restart|reset}
# Users: `default` (no password, local only; used by tests and the pipeline) and `grafana`
# (readonly=2: may read and change max_execution_time, never write), password from
# HANGWATCH_GRAFANA_CH_PASSWORD (default `grafana` for the local stack only), limited to the
# dashboard database (docs/privacy.md), which reads through the loopback cluster
# `hangwatch_dashboards` (config.d/dashboards.xml) as the read-only user of the same name.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CH_TCP_PORT="${CH_TCP_PORT:-9000}"
CH_HTTP_PORT="${CH_HTTP_PORT:-8123}"
# Opt-in native protocol over TLS (tcp_port_secure), e.g. for the security tests
# (tests/integration/test_security.py): CH_TLS_PORT and the server's certificate and key as
# PEM files (CH_TLS_CERT, CH_TLS_KEY). Unset: no TLS port, as before.
CH_TLS_PORT="${CH_TLS_PORT:-}"
DIR="$STATE_DIR/clickhouse"
PIDFILE="$DIR/clickhouse.pid"

install() {
  if command -v clickhouse-server >/dev/null || [ -x /usr/bin/clickhouse ]; then return 0; fi
  [ "$(id -u)" = 0 ] || { log "clickhouse-server is missing; run as root or: sudo apt-get install clickhouse-server"; exit 1; }
  log "installing Debian's clickhouse-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
}

write_config() {
  # The packaged config with every path in $DIR and our ports; no interserver port (single node).
  ch_config "$DIR" "$CH_TCP_PORT" "$CH_HTTP_PORT" -e "/<interserver_http_port>/d"
  if [ -n "$CH_TLS_PORT" ]; then
    : "${CH_TLS_CERT:?CH_TLS_PORT needs CH_TLS_CERT (server certificate, PEM)}"
    : "${CH_TLS_KEY:?CH_TLS_PORT needs CH_TLS_KEY (server key, PEM)}"
    # The packaged <openSSL><server> section, pointed at our files; no DH parameters file
    # (ECDHE ciphers need none).
    sed -i -e "s#<tcp_port>$CH_TCP_PORT</tcp_port>#&\n    <tcp_port_secure>$CH_TLS_PORT</tcp_port_secure>#" \
        -e "s#<certificateFile>/etc/clickhouse-server/server.crt</certificateFile>#<certificateFile>$CH_TLS_CERT</certificateFile>#" \
        -e "s#<privateKeyFile>/etc/clickhouse-server/server.key</privateKeyFile>#<privateKeyFile>$CH_TLS_KEY</privateKeyFile>#" \
        -e "/<dhParamsFile>/d" "$DIR/config.xml"
  fi
  ch_users "$DIR" "<ip>127.0.0.1</ip><ip>::1</ip>"
  ch_dashboards_cluster "$DIR" "$CH_TCP_PORT"
}

start() {
  if pid_alive "$PIDFILE"; then log "already running (pid $(cat "$PIDFILE"))"; return 0; fi
  install
  write_config
  log "starting ClickHouse on 127.0.0.1:$CH_TCP_PORT (native) / :$CH_HTTP_PORT (http); logs in $DIR/log"
  # shellcheck disable=SC2046
  nohup $(ch_server_bin) --config-file="$DIR/config.xml" >"$DIR/server.out" 2>&1 &
  echo $! >"$PIDFILE"
  local port
  for port in "$CH_TCP_PORT" $CH_TLS_PORT; do
    if ! wait_port 127.0.0.1 "$port" 60; then
      log "ClickHouse did not open port $port in 60 s; last log lines:"
      tail -n 30 "$DIR/server.out" "$DIR/log/clickhouse-server.err.log" >&2 || true; exit 1
    fi
  done
  log "ClickHouse is up (pid $(cat "$PIDFILE"))"
}

status() {
  if pid_alive "$PIDFILE" && wait_port 127.0.0.1 "$CH_TCP_PORT" 1; then
    echo "clickhouse: running (pid $(cat "$PIDFILE"), native 127.0.0.1:$CH_TCP_PORT, http :$CH_HTTP_PORT)"
  else
    echo "clickhouse: stopped"; return 3
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pid "$PIDFILE" clickhouse ;;
  restart) stop_pid "$PIDFILE" clickhouse; start ;;
  status) status ;;
  reset) stop_pid "$PIDFILE" clickhouse; rm -rf "$DIR"; log "data removed" ;;
  *) echo "usage: $0 {install|start|stop|restart|status|reset}" >&2; exit 2 ;;
esac
