#!/usr/bin/env bash
# A single-node Ceph cluster made by hand, for tests and the demo:
#   scripts/ceph.sh start|stop|status [DIR]
# 1 mon, 1 mgr, 1 OSD (bluestore on a sparse file), pool `rbd` of size 1
# with the rbd application, cephx on, loopback only. Everything (ceph.conf,
# keyrings, daemon data, logs, sockets, pid files) lives in DIR (default
# $CEPH_DIR or /tmp/tcmu-ceph), so it runs where / is read-only (the test VM).
# Use it with: ceph -c DIR/ceph.conf ..., rbd -c DIR/ceph.conf ...
# (the conf names the admin keyring), or export CEPH_CONF=DIR/ceph.conf.
#
# Idempotent: `start` creates what is missing, starts daemons that are not
# running and waits until the pool is usable; `stop` stops what runs. One
# start or stop runs at a time per DIR (a lock on DIR/.lock); a second waits.
# Knobs (environment): CEPH_MON_PORT (msgr2 port, default 3300; msgr1 is
# port+1; fixed when DIR is created), CEPH_OSD_SIZE (bluestore file, default 10G, sparse),
# CEPH_OSD_STORE (bluestore|memstore, default bluestore; memstore for a
# filesystem without O_DIRECT such as tmpfs), CEPH_NO_MGR=1 (skip the mgr:
# nothing on the rbd data path needs it), CEPH_TIMEOUT (seconds, default 180).
set -euo pipefail
{
CMD="${1:-}"
DIR="$(realpath -m "${2:-${CEPH_DIR:-/tmp/tcmu-ceph}}")"
PORT="${CEPH_MON_PORT:-3300}"
PORT1=$((PORT + 1))
OSD_SIZE="${CEPH_OSD_SIZE:-10G}"
STORE="${CEPH_OSD_STORE:-bluestore}"
TIMEOUT="${CEPH_TIMEOUT:-180}"
CONF="$DIR/ceph.conf"
# One start or stop at a time per DIR: two of them at once (two test files,
# a test and an admin) would both create the same cluster, or stop daemons
# the other is waiting for. The daemons are started without this fd, so
# the lock ends with the script.
if [ "$CMD" = start ] || [ "$CMD" = stop ]; then
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w "$TIMEOUT" 9 || { echo "ceph.sh: another ceph.sh start or stop held $DIR/.lock for ${TIMEOUT}s" >&2; exit 1; }
fi
# An existing cluster keeps the port it was created with.
if [ -f "$CONF" ]; then
  PORT="$(sed -n 's/^mon_host = \[v2:127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$CONF")"
  [ -n "$PORT" ] || { echo "ceph.sh: cannot read the monitor port from $CONF" >&2; exit 1; }
  PORT1=$((PORT + 1))
fi
ADMIN="$DIR/ceph.client.admin.keyring"
log() { echo "ceph.sh: $*" >&2; }
die() { log "$*"; exit 1; }
usage() { die "usage: $0 start|stop|status [DIR]"; }

need_tools() {
  local t missing=()
  for t in ceph ceph-mon ceph-osd ceph-authtool monmaptool rbd uuidgen; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ "${CEPH_NO_MGR:-0}" = 1 ] || command -v ceph-mgr >/dev/null || missing+=(ceph-mgr)
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (install with scripts/setup.sh: ceph-mon ceph-osd ceph-mgr ceph-common)"
}

# The CLI as client.admin of this cluster; bounded so a dead mon cannot hang us.
c() { timeout 60 ceph -c "$CONF" --connect-timeout 15 "$@"; }

pid_alive() { # name: is the daemon's pid file naming a live process?
  local f="$DIR/run/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f" 2>/dev/null)" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

write_conf() {
  local fsid="$1"
  # $name, $id and $cluster are Ceph's own metavariables, expanded per daemon.
  cat > "$CONF.tmp" <<EOF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$PORT,v1:127.0.0.1:$PORT1]
public_network = 127.0.0.1/32
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
run_dir = $DIR/run
admin_socket = $DIR/run/\$cluster-\$name.asok
pid_file = $DIR/run/\$name.pid
log_file = $DIR/log/\$cluster-\$name.log
crash_dir = $DIR/crash
exporter_sock_dir = $DIR/run
keyring = $ADMIN
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_allow_pool_delete = true
osd_crush_chooseleaf_type = 0
# A test box: small caches, no device-class guessing on a file.
osd_class_update_on_start = false
[client]
# Clients (rbd, the runner's librbd) share the name client.admin: no admin
# socket each, or the second one complains that the first one's exists.
admin_socket =
[mon]
mon_data = $DIR/mon/\$cluster-\$id
keyring = $DIR/mon/\$cluster-\$id/keyring
mon_cluster_log_file = $DIR/log/\$cluster.log
[mgr]
mgr_data = $DIR/mgr/\$cluster-\$id
keyring = $DIR/mgr/\$cluster-\$id/keyring
[osd]
osd_data = $DIR/osd/\$cluster-\$id
keyring = $DIR/osd/\$cluster-\$id/keyring
osd_objectstore = $STORE
# Not from the hostname: the test VM has none ("(none)" is no CRUSH name).
crush_location = root=default host=tcmu-ceph
bluestore_block_create = true
bluestore_block_size = $(numfmt --from=iec "$OSD_SIZE")
bluestore_fsck_on_mkfs = false
bluestore_fsck_on_mount = false
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
osd_memory_target = 939524096
memstore_device_bytes = $(numfmt --from=iec "$OSD_SIZE")
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
EOF
  mv "$CONF.tmp" "$CONF"
}

# -- one-time creation, each step skipped when its result exists ----------
create_cluster() {
  mkdir -p "$DIR"/{run,log,crash,mon,mgr,osd}
  if [ ! -f "$CONF" ]; then write_conf "$(uuidgen)"; fi
  local fsid
  fsid="$(awk -F' = ' '$1=="fsid"{print $2}' "$CONF")"
  if [ ! -f "$ADMIN" ]; then
    ceph-authtool --create-keyring "$ADMIN.tmp" --gen-key -n client.admin \
      --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
    mv "$ADMIN.tmp" "$ADMIN"
  fi
  local mon="$DIR/mon/ceph-a"
  if [ ! -f "$mon/done" ]; then
    rm -rf "$mon" "$DIR/mon.keyring" "$DIR/monmap"
    ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$DIR/mon.keyring" --import-keyring "$ADMIN" >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$PORT,v1:127.0.0.1:$PORT1]" "$DIR/monmap" >/dev/null
    mkdir -p "$mon"
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
    cp "$DIR/mon.keyring" "$mon/keyring"
    rm -f "$DIR/monmap" "$DIR/mon.keyring"
    touch "$mon/done"
  fi
}

wait_for() { # seconds, description, command...
  local limit="$1" what="$2"; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out after ${limit}s waiting for $what (logs: $DIR/log)"
    sleep 0.5
  done
}

start_mon() {
  pid_alive mon.a && return 0
  if ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; then
    die "port $PORT is in use by another process (another cluster? set CEPH_MON_PORT when creating DIR)"
  fi
  ceph-mon -c "$CONF" -i a 9>&-
  wait_for "$TIMEOUT" "the monitor" c mon stat
}

start_mgr() {
  [ "${CEPH_NO_MGR:-0}" = 1 ] && return 0
  local d="$DIR/mgr/ceph-x"
  if [ ! -f "$d/keyring" ]; then
    mkdir -p "$d"
    c auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' -o "$d/keyring.tmp"
    mv "$d/keyring.tmp" "$d/keyring"
  fi
  pid_alive mgr.x || ceph-mgr -c "$CONF" -i x 9>&-
}

# The OSD's id is recorded in DIR/osd/id once the cluster allocated it.
create_osd() {
  [ -f "$DIR/osd/id" ] && return 0
  local uuid secret id d
  # `osd new` with the same uuid returns the same id: a retry after a failed
  # mkfs reuses it instead of leaking an OSD id.
  if [ ! -f "$DIR/osd/new" ]; then
    echo "$(uuidgen) $(ceph-authtool --gen-print-key)" > "$DIR/osd/new.tmp"
    mv "$DIR/osd/new.tmp" "$DIR/osd/new"
  fi
  read -r uuid secret < "$DIR/osd/new"
  id="$(echo "{\"cephx_secret\": \"$secret\"}" | c osd new "$uuid" -i -)"
  [[ "$id" =~ ^[0-9]+$ ]] || die "ceph osd new returned '$id'"
  d="$DIR/osd/ceph-$id"
  rm -rf "$d" && mkdir -p "$d"
  ceph-authtool --create-keyring "$d/keyring" --name "osd.$id" --add-key "$secret" >/dev/null
  ceph-osd -c "$CONF" -i "$id" --mkfs --osd-uuid "$uuid" 2>>"$DIR/log/mkfs.log" \
    || die "ceph-osd --mkfs failed (see $DIR/log/mkfs.log and $DIR/log/ceph-osd.$id.log)"
  echo "$id" > "$DIR/osd/id"
  rm -f "$DIR/osd/new"
}

start_osd() {
  local id
  id="$(cat "$DIR/osd/id")"
  pid_alive "osd.$id" || ceph-osd -c "$CONF" -i "$id" 9>&-
  wait_for "$TIMEOUT" "osd.$id up" osd_up "$id"
}

osd_up() { c osd dump --format json | grep -q "\"osd\":$1,\"uuid\":\"[^\"]*\",\"up\":1"; }

# Usable = a client can read the pool's rbd_directory object: that needs an
# active PG, and works with or without a mgr (PG states are mgr data).
pool_ready() { timeout 15 rbd -c "$CONF" ls rbd; }

create_pool() {
  if ! c osd pool ls | grep -qx rbd; then
    c osd pool create rbd 8 8 replicated >/dev/null
    c osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null
    c osd pool application enable rbd rbd >/dev/null
    timeout 60 rbd -c "$CONF" pool init rbd
  fi
  wait_for "$TIMEOUT" "pool rbd active" pool_ready
}

start() {
  need_tools
  [ "$(id -u)" = 0 ] || die "run as root (the daemons keep root; nothing is installed)"
  local t0=$SECONDS
  create_cluster
  start_mon
  start_mgr
  create_osd
  start_osd
  create_pool
  log "up in $((SECONDS - t0))s: conf $CONF (export CEPH_CONF=$CONF)"
}

stop() {
  local f pid name any=0
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    name="$(basename "$f" .pid)"
    pid="$(cat "$f" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"; any=1
      # daemons remove their pid file on a clean exit; wait for the process itself
      local end=$((SECONDS + 30))
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && { log "$name did not stop; SIGKILL"; kill -KILL "$pid" || true; }
    fi
    rm -f "$f"
  done
  [ $any = 1 ] && log "stopped ($DIR)" || log "nothing running in $DIR"
}

status() {
  [ -f "$CONF" ] || die "no cluster in $DIR"
  local f name
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    name="$(basename "$f" .pid)"
    if pid_alive "$name"; then echo "$name: running (pid $(cat "$f"))"; else echo "$name: not running"; fi
  done
  c -s
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
exit
}
