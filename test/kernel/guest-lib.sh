# Guest-side helpers for kernel scenario scripts (bash, sourced):
#   . "$TCMU_TS_ROOT/test/kernel/guest-lib.sh"
# Runs inside the test-bed VM (scripts/vm-run.sh): configfs is mounted, target
# modules are loaded, /mnt/scratch is a writable ext4 disk, the checkout is
# read-only. Every helper prints errors on stderr and returns non-zero; none
# exits, so a scenario can report each step and still tear down.

CFG=/sys/kernel/config/target
LOOP_WWN=${LOOP_WWN:-naa.5001405aa0000001}
LOOP_NEXUS=${LOOP_NEXUS:-naa.5001405aa0000002}
ISCSI_IQN=${ISCSI_IQN:-iqn.2003-01.org.linux-iscsi.tcmu-ts:test}
RUNNER_LOG=${RUNNER_LOG:-/mnt/scratch/runner.log}
RUNNER_PID=

# -- reporting ---------------------------------------------------------------
# `@@RESULT key=value` lines are what the host side (test/kernel/vm.ts) parses.
result() { local k="$1"; shift; echo "@@RESULT $k=$*"; }
# Lines of a file as `@@LOG <name> <line>`, so the host can quote them.
dump_log() { local name="$1" file="$2" n="${3:-40}"; [ -f "$file" ] || return 0
  tail -n "$n" "$file" | sed "s/^/@@LOG $name /"; }
# The console, also from inside $(...): where step times are reported.
exec 9>&1
# step_time KEY T0: `@@LOG step_sec KEY S` for a step begun at T0 (date +%s.%N);
# the host prints the slowest steps, so a test that outgrows the CI budget shows where.
step_time() { echo "@@LOG step_sec $1 $(awk -v a="$2" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >&9; }
# timed KEY CMD...: run CMD as is (its output and status pass through) and report its time.
timed() { local k="$1" t0 rc; shift
  t0=$(date +%s.%N)
  "$@"; rc=$?
  step_time "$k" "$t0"
  return $rc; }
# check KEY CMD...: run CMD, report KEY=ok or KEY=fail (with its output as @@LOG KEY)
# and how long it took.
check() { local k="$1"; shift; local out rc t0
  t0=$(date +%s.%N)
  out=$("$@" 2>&1); rc=$?
  step_time "$k" "$t0"
  if [ $rc = 0 ]; then result "$k" ok; else result "$k" fail; printf '%s\n' "$out" | tail -n 30 | sed "s/^/@@LOG $k /"; fi
  return $rc; }
# wait_for SECONDS CMD...: poll CMD every 0.2 s.
wait_for() { local t="$1"; shift; local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$end" ] && return 1; sleep 0.2; done; }
die() { echo "guest-lib: $*" >&2; return 1; }
# dev_busy /dev/sdX: the initiator has commands in flight on the disk
# (/sys/block/sdX/inflight: reads, writes), i.e. in the target or the
# runner's ring. Kill scenarios wait for it right before SIGKILL, so a kill
# is known to land under I/O rather than assumed to after a sleep. (The
# daemon's own `status` in-flight count is too slow to sample: a node start
# per look, and the file handler finishes a command in microseconds.)
dev_busy() { local r w; read -r r w < "/sys/block/${1#/dev/}/inflight" && [ $((r + w)) -gt 0 ]; }

# -- backstores ----------------------------------------------------------------
# tcmu_create NAME DEV_CONFIG SIZE_BYTES [EXTRA_CONTROL_KEYS] -> prints /dev/uioN
# (largest transfer: TCMU_MAX_SECTORS blocks, default 1024)
tcmu_create() {
  local name="$1" cfg="$2" size="$3" extra="${4:-}" d="$CFG/core/user_1/$1" u
  mkdir -p "$d" || return 1
  echo -n "dev_config=$cfg,dev_size=$size,hw_max_sectors=${TCMU_MAX_SECTORS:-1024}${extra:+,$extra}" > "$d/control" \
    || die "control write failed for $name" || return 1
  echo 1 > "$d/enable" || die "enable failed for $name" || return 1
  for u in /sys/class/uio/uio*; do
    [ "$(cat "$u/name" 2>/dev/null)" = "tcm-user/1/$name/$cfg" ] && { echo "/dev/${u##*/}"; return 0; }
  done
  die "no uio device named tcm-user/1/$name/$cfg"
}
# uio_sysfs NAME -> /sys/class/uio/uioN of the TCMU device NAME
uio_sysfs() { local u; for u in /sys/class/uio/uio*; do
  case "$(cat "$u/name" 2>/dev/null)" in "tcm-user/1/$1/"*) echo "$u"; return 0 ;; esac; done; return 1; }
# uio_of NAME -> uioN (what RUNNER_EXPECT lists)
uio_of() { local u; u=$(uio_sysfs "$1") && echo "${u##*/}"; }

# fileio_create NAME PATH SIZE_BYTES [EXTRA] -- the in-kernel reference backstore
fileio_create() {
  local name="$1" path="$2" size="$3" extra="${4:-}" d="$CFG/core/fileio_1/$1"
  mkdir -p "$d" || return 1
  echo -n "fd_dev_name=$path,fd_dev_size=$size${extra:+,$extra}" > "$d/control" || return 1
  # LIO reports no VPD pages (0x83, 0xb0 ...) until a unit serial is set
  # (targetcli always sets one), so set one like targetcli does.
  echo "tcmu-ts-ref-$name" > "$d/wwn/vpd_unit_serial" 2>/dev/null
  echo 1 > "$d/enable" || die "fileio enable failed for $name"
}
# dev_path NAME -> configfs dir of the backstore NAME (any HBA)
dev_path() { local d; for d in "$CFG"/core/*/"$1"; do [ -d "$d" ] && { echo "$d"; return 0; }; done; return 1; }

# -- fabrics -------------------------------------------------------------------
# scsi_disk_for H:C:T:L -> /dev/sdX once the kernel has attached it
_scsi_block() { local b; for b in /sys/bus/scsi/devices/"$1"/block/*; do [ -e "$b" ] && { echo "/dev/${b##*/}"; return 0; }; done; return 1; }

# loop_export NAME [LUN] -> prints /dev/sdX. For a TCMU device the runner must
# already be serving it: the link makes the kernel scan (INQUIRY, READ CAPACITY).
loop_export() {
  local name="$1" lun="${2:-0}" t="$CFG/loopback/$LOOP_WWN/tpgt_1" dev addr
  dev=$(dev_path "$name") || die "no backstore $name" || return 1
  mkdir -p "$t/lun/lun_$lun" || return 1
  if ! grep -q naa "$t/nexus" 2>/dev/null; then echo "$LOOP_NEXUS" > "$t/nexus" || return 1; fi
  ln -s "$dev" "$t/lun/lun_$lun/$name" || die "LUN link failed for $name" || return 1
  addr=$(cat "$t/address" 2>/dev/null)      # "host:channel:target"
  if [ -n "$addr" ] && wait_for 60 _scsi_block "$addr:$lun"; then _scsi_block "$addr:$lun"; return 0; fi
  # fallback: any tcm_loop host's device with this LUN
  local h d
  for h in /sys/class/scsi_host/host*; do
    [ "$(cat "$h/proc_name" 2>/dev/null)" = tcm_loop ] || continue
    for d in /sys/bus/scsi/devices/"${h##*/host}":*:*:"$lun"; do _scsi_block "${d##*/}" && return 0; done
  done
  die "no /dev/sdX appeared for $name (lun $lun)"
}

# iscsi_export NAME [LUN] -- in-kernel iSCSI target on 127.0.0.1:3260, auth off,
# demo mode (any initiator). Prints which initiator the guest has:
# `iscsiadm` (open-iscsi), `libiscsi` (iscsi-inq & co) or `none`.
iscsi_export() {
  local name="$1" lun="${2:-0}" t="$CFG/iscsi/$ISCSI_IQN/tpgt_1" dev
  dev=$(dev_path "$name") || die "no backstore $name" || return 1
  mkdir -p "$t/lun/lun_$lun" || return 1
  ln -s "$dev" "$t/lun/lun_$lun/$name" || return 1
  [ -d "$t/np/127.0.0.1:3260" ] || mkdir "$t/np/127.0.0.1:3260" || return 1
  echo 0 > "$t/attrib/authentication"
  echo 1 > "$t/attrib/generate_node_acls"
  echo 1 > "$t/attrib/cache_dynamic_acls"
  echo 0 > "$t/attrib/demo_mode_write_protect"
  echo 1 > "$t/enable" || return 1
  if command -v iscsiadm >/dev/null; then echo iscsiadm
  elif command -v iscsi-inq >/dev/null; then echo libiscsi
  else echo none; fi
}

# teardown_all: LUN links, LUN/ACL/portal dirs, TPGs, WWNs, then devices, then
# HBAs. Tolerant of partial setups; returns 1 if anything is left behind.
teardown_all() {
  local w t l x h d
  for w in "$CFG"/loopback/naa.* "$CFG"/iscsi/iqn.* "$CFG"/iscsi/naa.*; do
    [ -d "$w" ] || continue
    for t in "$w"/tpgt_*; do
      [ -d "$t" ] || continue
      [ -f "$t/enable" ] && echo 0 > "$t/enable" 2>/dev/null
      for l in "$t"/acls/*/lun_*; do
        [ -d "$l" ] || continue
        for x in "$l"/*; do [ -L "$x" ] && rm -f "$x"; done; rmdir "$l" 2>/dev/null; done
      for x in "$t"/acls/*; do [ -d "$x" ] && rmdir "$x" 2>/dev/null; done
      for l in "$t"/lun/lun_*; do
        [ -d "$l" ] || continue
        for x in "$l"/*; do [ -L "$x" ] && rm -f "$x"; done; rmdir "$l" 2>/dev/null; done
      for x in "$t"/np/*; do [ -d "$x" ] && rmdir "$x" 2>/dev/null; done
      rmdir "$t" 2>/dev/null
    done
    rmdir "$w" 2>/dev/null
  done
  for h in "$CFG"/core/*_*; do
    [ -d "$h" ] || continue
    for d in "$h"/*; do
      [ -d "$d" ] || continue
      # ALUA groups an admin made (the kernel's default_tg_pt_gp goes with the device)
      for x in "$d"/alua/*; do [ -d "$x" ] && [ "${x##*/}" != default_tg_pt_gp ] && rmdir "$x" 2>/dev/null; done
      rmdir "$d" 2>/dev/null
    done
    rmdir "$h" 2>/dev/null
  done
  local left
  left=$(ls -d "$CFG"/core/*_* "$CFG"/loopback/naa.* "$CFG"/iscsi/iqn.* 2>/dev/null)
  [ -z "$left" ] || { echo "teardown_all: left behind: $left" >&2; return 1; }
}

# finish_scenario [RC] [LOG_LINES]: the usual end of a scenario with one
# runner: tear down with the runner still answering, stop it, report its
# error-level lines (pino 50/60) and the last LOG_LINES (40) of its log, exit RC.
finish_scenario() {
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
  dump_log runner "$RUNNER_LOG" "${2:-40}"
  exit "${1:-0}"
}

# -- ALUA, as the initiator sees it (sg3-utils) ---------------------------------------
# tpgs DEV: the TPGS field of standard INQUIRY
tpgs() { sg_inq "$1" 2>/dev/null | sed -n 's/.*TPGS=\([0-9]\).*/\1/p'; }
# vpd83_port DEV LABEL: a target port designator of VPD 0x83 ("Relative target port", "Target port group")
vpd83_port() { sg_vpd -p 0x83 "$1" 2>/dev/null | sed -n "s/.*$2: *\(0x[0-9a-f]*\).*/\1/p" | head -1; }
# rtpg_report DEV [--extended]: sg_rtpg's report (stderr included), asked again after a
# unit attention: sg_rtpg does not retry, and each ALUA change queues one on the path.
rtpg_report() { local i out rc; for i in 1 2 3 4; do
  out=$(sg_rtpg ${2:-} "$1" 2>&1); rc=$?
  grep -qi 'unit attention' <<<"$out" || break; done
  echo "$out"; return $rc; }
# rtpg_state_in: the first group's asymmetric access state in a report on stdin
rtpg_state_in() { sed -n 's/.*asymmetric access state *: *\(0x[0-9a-f]*\).*/\1/p' | head -1; }
# rtpg_state DEV: the first group's state through DEV
rtpg_state() { rtpg_report "$1" | rtpg_state_in; }

# -- filesystem round trip -----------------------------------------------------------
# tree_sum DIR: one sha256 over every file of DIR (sorted paths and contents).
tree_sum() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1); }
# ext4_roundtrip DEV MNT NDIRS [MKFS_OPTS...]: mkfs.ext4 DEV, copy NDIRS
# directories of /usr/share/doc onto it, unmount, drop caches, remount and
# checksum again. Results: tree_files, mkfs, mount, copy, umount, remount,
# tree_sum_src, tree_sum_copy.
ext4_roundtrip() {
  local dev="$1" mnt="$2" ndirs="$3" src=/tmp/tree-src sum_src; shift 3
  mkdir -p $src && (cd /usr/share/doc && ls | head -"$ndirs" | xargs cp -a -t $src 2>/dev/null)
  result tree_files "$(find $src -type f | wc -l)"
  sum_src=$(tree_sum $src)
  mkdir -p "$mnt"
  if check mkfs mkfs.ext4 -q -F "$@" "$dev" && check mount mount "$dev" "$mnt"; then
    check copy cp -a $src "$mnt/tree"
    check umount umount "$mnt"
    echo 3 > /proc/sys/vm/drop_caches
    check remount mount "$dev" "$mnt"
    result tree_sum_src "$sum_src"
    result tree_sum_copy "$(tree_sum "$mnt/tree")"
    umount "$mnt"
  fi
}

# -- the runner ----------------------------------------------------------------
# runner_start [serve args...]: start `tcmu-ts serve` in the background (its
# stdout in $RUNNER_STDOUT, default $RUNNER_LOG, the log file the checks read;
# a runner started with --log-file sets both) and wait until it holds every tcm-user uio device open (the
# kernel-visible sign it serves them; set RUNNER_EXPECT="uio0 uio1" to narrow
# it) or, with no devices, until it logs something. RUNNER_TIMEOUT (60 s).
_runner_has_all() {
  local u want="${RUNNER_EXPECT:-}" fds
  kill -0 "$RUNNER_PID" 2>/dev/null || return 2
  if [ -z "$want" ]; then
    for u in /sys/class/uio/uio*; do
      case "$(cat "$u/name" 2>/dev/null)" in tcm-user/*) want="$want ${u##*/}" ;; esac; done
  fi
  [ -n "$want" ] || { [ -s "$RUNNER_LOG" ]; return; }
  fds=$(ls -l /proc/"$RUNNER_PID"/fd 2>/dev/null)
  for u in $want; do grep -q "/dev/$u\$" <<<"$fds" || return 1; done
}
runner_start() {
  local end=$(( $(date +%s) + ${RUNNER_TIMEOUT:-60} )) rc
  # shellcheck disable=SC2086 # RUNNER_NODE_ARGS: node's own options, e.g. --cpu-prof (not allowed in NODE_OPTIONS)
  node ${RUNNER_NODE_ARGS:-} "$TCMU_TS_ROOT/dist/src/cli/main.js" serve "$@" >"${RUNNER_STDOUT:-$RUNNER_LOG}" 2>&1 &
  RUNNER_PID=$!
  while :; do
    _runner_has_all; rc=$?
    [ $rc = 0 ] && return 0
    if [ $rc = 2 ]; then
      wait "$RUNNER_PID"; echo "runner_start: runner exited with $? before serving" >&2
      dump_log runner "$RUNNER_LOG"; RUNNER_PID=; return 1
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "runner_start: not serving after ${RUNNER_TIMEOUT:-60}s" >&2; dump_log runner "$RUNNER_LOG"; return 1
    fi
    sleep 0.2
  done
}
# runner_stop: SIGTERM, wait up to RUNNER_STOP_TIMEOUT (30 s); prints the
# runner's exit code as @@RESULT runner_exit; KILL and dump the log on failure.
runner_stop() {
  [ -n "$RUNNER_PID" ] || return 0
  local pid=$RUNNER_PID n=0 rc
  RUNNER_PID=
  kill -TERM "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null && [ $n -lt $(( ${RUNNER_STOP_TIMEOUT:-30} * 5 )) ]; do sleep 0.2; n=$((n+1)); done
  if kill -0 "$pid" 2>/dev/null; then
    echo "runner_stop: still running after SIGTERM, killing" >&2
    kill -KILL "$pid"; wait "$pid" 2>/dev/null; result runner_exit killed; dump_log runner "$RUNNER_LOG"; return 1
  fi
  wait "$pid"; rc=$?
  result runner_exit "$rc"
  [ $rc = 0 ] || { dump_log runner "$RUNNER_LOG"; return 1; }
}

# -- Ceph ------------------------------------------------------------------------
# ceph_start DIR [OSD_SIZE]: lo up, then scripts/ceph.sh's single-node cluster
# in DIR without a mgr (nothing on the rbd data path needs one, and under TCG
# its Python start costs minutes). Reports cluster=ok|fail and cluster_sec;
# on failure dumps the start, OSD and monitor logs and returns 1.
ceph_start() {
  local dir="$1" size="${2:-3G}" t0
  ip link set lo up
  t0=$(date +%s)
  if CEPH_NO_MGR=1 CEPH_OSD_SIZE=$size CEPH_TIMEOUT=600 bash "$TCMU_TS_ROOT/scripts/ceph.sh" start "$dir" >/tmp/ceph-start.log 2>&1; then
    result cluster ok
  else
    result cluster fail
    dump_log ceph_start /tmp/ceph-start.log; dump_log osd "$dir/log/ceph-osd.0.log"; dump_log mon "$dir/log/ceph-mon.a.log"
    return 1
  fi
  result cluster_sec $(( $(date +%s) - t0 ))
}
