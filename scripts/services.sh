#!/usr/bin/env bash
# Local backing services for hongbao: PostgreSQL, Redis and a single-node Kafka
# (KRaft, broker+controller in one JVM) run straight from Maven Central jars.
#
#   scripts/services.sh up             ensure Postgres + Redis answer, start Kafka, wait until ready
#   scripts/services.sh down           stop Kafka (Postgres/Redis belong to the machine: left alone)
#   scripts/services.sh status         print each service's state; non-zero exit if any is down
#   scripts/services.sh restart-kafka  stop + start the broker and wait until ready (crash tests)
#   scripts/services.sh restart-postgres  restart the machine's Postgres, wait until it answers (crash tests)
#
# Works from any cwd, needs no input, idempotent. Kafka endpoint: 127.0.0.1:9092.
# Tunables (env): KAFKA_HEAP_OPTS (default "-Xmx512m -Xms512m"),
#   KAFKA_START_TIMEOUT (s, default 90), KAFKA_STOP_TIMEOUT (s, default 60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KDIR="$ROOT/scripts/kafka"
LIBS="$KDIR/libs"
DATA="$KDIR/data"
LOGS="$KDIR/logs"
POM="$KDIR/pom.xml"
TEMPLATE="$KDIR/server.properties"
CONF="$DATA/server.properties"
LOG_DIRS="$DATA/kraft-logs"
CLUSTER_ID_FILE="$DATA/cluster.id"
PIDFILE="$KDIR/kafka.pid"
OUTFILE="$LOGS/kafka.out"
SERVER_LOG="$LOGS/server.log"

KAFKA_VERSION="3.9.1"
KAFKA_JAR="$LIBS/kafka_2.13-$KAFKA_VERSION.jar"
KAFKA_HOST=127.0.0.1
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m}"

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

log() { printf '[services] %s\n' "$*"; }
err() { printf '[services] ERROR: %s\n' "$*" >&2; }

kafka_log_tail() {
  if [[ -s "$OUTFILE" ]]; then # JVM stdout/stderr since the last start marker
    printf '[services] ---- %s (last start) ----\n' "$OUTFILE" >&2
    awk '/^==== .* starting kafka ====$/ { n = 0 } { buf[n++] = $0 } END { for (i = 0; i < n; i++) print buf[i] }' \
      "$OUTFILE" | tail -n 40 >&2 || true
  fi
  if [[ -s "$SERVER_LOG" ]]; then
    printf '[services] ---- last lines of %s ----\n' "$SERVER_LOG" >&2
    tail -n 30 "$SERVER_LOG" >&2 || true
  fi
}

die_kafka() {
  err "$*"
  kafka_log_tail
  exit 1
}

# ---------------------------------------------------------------- helpers

port_open() { # host port
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# Run a Kafka CLI class with quiet logging and a small heap.
kafka_tool() { # main-class args...
  local cls="$1"; shift
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KDIR/tools-log4j.properties" \
    -cp "$LIBS/*" "$cls" "$@"
}

# pid of our broker if it is alive (and really is a kafka.Kafka JVM), else nothing.
kafka_pid() {
  local pid=""
  [[ -f "$PIDFILE" ]] && pid="$(tr -dc '0-9' <"$PIDFILE")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
    printf '%s\n' "$pid"
    return 0
  fi
  # A broker this script started from another checkout of the project (a CI clone, say):
  # it holds the port, so it is the one to manage.
  pid="$(pgrep -f 'java .*kafka\.Kafka .*server\.properties' | head -n 1 || true)"
  [[ -n "$pid" ]] || return 1
  printf '%s\n' "$pid"
}

# The broker answers a metadata request (list topics) on 127.0.0.1:9092.
kafka_answers() {
  port_open "$KAFKA_HOST" "$KAFKA_PORT" || return 1
  [[ -f "$KAFKA_JAR" ]] || return 1
  timeout 30 java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KDIR/tools-log4j.properties" -cp "$LIBS/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" --list >/dev/null 2>&1
}

need() { # command...
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { err "'$c' not found on PATH"; exit 1; }
  done
}

# ---------------------------------------------------------------- postgres / redis

pg_up() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q >/dev/null 2>&1; }
redis_up() { [[ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

wait_for() { # seconds description command...
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      err "$what did not come up within ${secs}s"
      return 1
    fi
    sleep 1
  done
}

ensure_postgres() {
  need pg_isready
  if pg_up; then
    log "postgres: up ($PG_HOST:$PG_PORT)"
    return
  fi
  log "postgres: not answering, starting it"
  need pg_ctlcluster
  local ver
  ver="$(ls /etc/postgresql | sort -V | tail -n 1)"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  wait_for 30 postgres pg_up
  log "postgres: up ($PG_HOST:$PG_PORT)"
}

# Crash tests: restart the machine's Postgres (fast shutdown, every connection dropped).
cmd_restart_postgres() {
  need pg_ctlcluster
  local ver
  ver="$(ls /etc/postgresql | sort -V | tail -n 1)"
  log "postgres: restarting"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main restart -m fast
  wait_for 30 postgres pg_up
  log "postgres: up ($PG_HOST:$PG_PORT)"
}

ensure_redis() {
  need redis-cli
  if redis_up; then
    log "redis: up ($REDIS_HOST:$REDIS_PORT)"
    return
  fi
  log "redis: not answering, starting it"
  need redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for 15 redis redis_up
  log "redis: up ($REDIS_HOST:$REDIS_PORT)"
}

# ---------------------------------------------------------------- kafka

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

ensure_jars() {
  if [[ -f "$KAFKA_JAR" && -f "$LIBS/.pom.sha256" && "$(cat "$LIBS/.pom.sha256")" == "$(pom_hash)" ]]; then
    return
  fi
  need mvn java
  log "kafka: fetching jars with Maven (first run only, may take a few minutes)"
  local tmp="$KDIR/libs.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$LOGS"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" \
    >"$LOGS/mvn.log" 2>&1; then
    rm -rf "$tmp"
    err "mvn dependency:copy-dependencies failed; last lines of $LOGS/mvn.log:"
    tail -n 30 "$LOGS/mvn.log" >&2 || true
    exit 1
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; err "kafka jar missing after mvn"; exit 1; }
  pom_hash >"$tmp/.pom.sha256"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  log "kafka: $(find "$LIBS" -name '*.jar' | wc -l) jars in scripts/kafka/libs"
}

write_config() {
  mkdir -p "$DATA" "$LOGS"
  {
    cat "$TEMPLATE"
    printf '\n# generated by scripts/services.sh\nlog.dirs=%s\n' "$LOG_DIRS"
  } >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
}

ensure_formatted() {
  local id
  if [[ -f "$LOG_DIRS/meta.properties" ]]; then
    if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
      sed -n 's/^cluster\.id=//p' "$LOG_DIRS/meta.properties" >"$CLUSTER_ID_FILE"
    fi
    return
  fi
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    id="$(kafka_tool kafka.tools.StorageTool random-uuid | tail -n 1 | tr -d '[:space:]')"
    [[ "$id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die_kafka "could not generate a cluster id (got '$id')"
    printf '%s\n' "$id" >"$CLUSTER_ID_FILE"
  fi
  id="$(tr -d '[:space:]' <"$CLUSTER_ID_FILE")"
  log "kafka: formatting storage (cluster id $id)"
  kafka_tool kafka.tools.StorageTool format -t "$id" -c "$CONF" --ignore-formatted >>"$OUTFILE" 2>&1 \
    || die_kafka "kafka storage format failed"
}

start_kafka() {
  local pid
  if pid="$(kafka_pid)"; then
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      log "kafka: already running (pid $pid, $KAFKA_HOST:$KAFKA_PORT)"
      return
    fi
    log "kafka: process $pid alive but port not open yet, waiting"
    wait_kafka_ready "$pid"
    return
  fi
  rm -f "$PIDFILE"
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    ensure_jars
    if kafka_answers; then
      log "kafka: a broker not started by this script already answers on $KAFKA_HOST:$KAFKA_PORT; using it"
      return
    fi
    err "port $KAFKA_PORT is taken by something that is not a Kafka broker"
    exit 1
  fi
  if port_open "$KAFKA_HOST" "$KAFKA_CONTROLLER_PORT"; then
    err "controller port $KAFKA_CONTROLLER_PORT is already taken"
    exit 1
  fi

  need java
  ensure_jars
  write_config
  ensure_formatted

  log "kafka: starting broker (KRaft, heap: $HEAP_OPTS)"
  printf '\n==== %s starting kafka ====\n' "$(date -u +%FT%TZ)" >>"$OUTFILE"
  # setsid: own session, so the broker survives the caller's process group being killed.
  # The inner shell writes its own pid, then execs the JVM (same pid).
  # shellcheck disable=SC2016
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
    java $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOGS" -Dlog4j.configuration="file:$KDIR/log4j.properties" \
    -cp "$LIBS/*" kafka.Kafka "$CONF" \
    >>"$OUTFILE" 2>&1 </dev/null 9>&- &
  # wait for the pid file to be written by the child
  local i
  for i in $(seq 1 50); do
    [[ -s "$PIDFILE" ]] && break
    sleep 0.1
  done
  pid="$(tr -dc '0-9' <"$PIDFILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || die_kafka "kafka did not start (no pid)"
  wait_kafka_ready "$pid"
}

wait_kafka_ready() { # pid
  local pid="$1" start=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
  log "kafka: waiting for broker on $KAFKA_HOST:$KAFKA_PORT (pid $pid, up to ${START_TIMEOUT}s)"
  while :; do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; die_kafka "kafka process $pid exited during startup"; }
    if port_open "$KAFKA_HOST" "$KAFKA_PORT" && kafka_answers; then
      log "kafka: up (pid $pid, $KAFKA_HOST:$KAFKA_PORT, ready after $((SECONDS - start))s)"
      return
    fi
    ((SECONDS < deadline)) || die_kafka "kafka not ready within ${START_TIMEOUT}s (pid $pid still running; see $LOGS)"
    sleep 1
  done
}

stop_kafka() {
  local pid
  if ! pid="$(kafka_pid)"; then
    rm -f "$PIDFILE"
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      log "kafka: not started by this script, but something listens on $KAFKA_PORT; leaving it alone"
    else
      log "kafka: not running"
    fi
    return
  fi
  log "kafka: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT)) start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "kafka: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.5
  done
  # the port must be free before anyone starts a new broker
  local i
  for i in $(seq 1 20); do
    port_open "$KAFKA_HOST" "$KAFKA_PORT" || break
    sleep 0.5
  done
  rm -f "$PIDFILE"
  log "kafka: stopped (took $((SECONDS - start))s)"
}

# ---------------------------------------------------------------- commands

with_lock() { # serialize concurrent up/down/restart calls
  mkdir -p "$DATA"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$DATA/.services.lock"
    flock -w 300 9 || { err "could not take $DATA/.services.lock"; exit 1; }
  fi
  "$@"
}

cmd_up() {
  ensure_postgres
  ensure_redis
  start_kafka
  log "all services up"
}

cmd_down() {
  stop_kafka
}

cmd_restart_kafka() {
  # A broker started from another checkout keeps its topics in that checkout's data folder:
  # restart it from there, or its topics would vanish with the restart.
  local pid conf root
  if pid="$(kafka_pid)"; then
    conf="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep 'server\.properties$' | tail -n 1 || true)"
    if [[ -n "$conf" && "$conf" != "$CONF" ]]; then
      root="$(cd "$(dirname "$conf")/../../.." 2>/dev/null && pwd || true)"
      if [[ -n "$root" && -x "$root/scripts/services.sh" || -f "$root/scripts/services.sh" ]]; then
        log "kafka: the broker belongs to $root; restarting it there"
        bash "$root/scripts/services.sh" restart-kafka
        return
      fi
    fi
  fi
  stop_kafka
  start_kafka
}

cmd_status() {
  local rc=0 pid
  if pg_up; then log "postgres: up ($PG_HOST:$PG_PORT)"; else log "postgres: DOWN"; rc=1; fi
  if redis_up; then log "redis:    up ($REDIS_HOST:$REDIS_PORT)"; else log "redis:    DOWN"; rc=1; fi
  if pid="$(kafka_pid)"; then
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      log "kafka:    up (pid $pid, $KAFKA_HOST:$KAFKA_PORT)"
    else
      log "kafka:    STARTING (pid $pid, port $KAFKA_PORT not open yet)"
      rc=1
    fi
  elif port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    log "kafka:    up ($KAFKA_HOST:$KAFKA_PORT, not started by this script)"
  else
    log "kafka:    DOWN"
    rc=1
  fi
  return "$rc"
}

usage() {
  echo "usage: $0 up|down|status|restart-kafka|restart-postgres" >&2
}

main() {
  case "${1:-}" in
    up) with_lock cmd_up ;;
    down) with_lock cmd_down ;;
    restart-kafka) with_lock cmd_restart_kafka ;;
    restart-postgres) cmd_restart_postgres ;;
    status) cmd_status ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
