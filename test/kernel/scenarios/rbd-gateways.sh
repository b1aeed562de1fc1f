# Guest scenario: one RBD image behind two gateways (issue 21 acceptance 4).
# Two tcmu-ts daemons, as two gateway hosts would run them:
# each has its own control socket (hence its own runtime directory, so
# neither takes the other for its own dead predecessor) and serves its own
# TCMU device on rbd/gw0 under its own handler name; each device is exported
# through its own tcm_loop target, so the initiator sees two paths (two
# disks) to one image. Sourced after guest-lib.sh.
#   1. fio verify through path A and path B at once, on separate regions:
#      a write through the gateway that does not hold the exclusive lock
#      takes it over (librbd's cooperative hand-over); nothing may be lost or
#      torn. Then each region reads the same through both paths and through
#      `rbd export`.
#   2. SIGKILL gateway A while it holds the lock, then fio verify through B:
#      B's writes wait until the cluster expires A's watch, B breaks the dead
#      owner's lock (blocklisting A) and its fio finishes without an error.
# ALUA: each gateway's device has its own implicit port group (A: id 1, B:
# id 2) holding that gateway's LUN. The group state follows the exclusive
# lock: REPORT TARGET PORT GROUPS through the owner says active/optimized,
# through the other active/non-optimized, and after the failover B's group
# turns active/optimized by itself (no RTPG asked) while I/O flows.
set -u
S=/mnt/scratch
CEPH_DIR=$S/ceph
export CEPH_CONF=$CEPH_DIR/ceph.conf
MiB=1048576
SIZE=$((1 << 30))
LOOP_B_WWN=naa.5001405bb0000001
LOOP_B_NEXUS=naa.5001405bb0000002

read_sum() { dd if="$1" bs=$MiB skip=$(( $2 / MiB )) count=$(( $3 / MiB )) iflag=direct status=none | sha256sum | cut -d' ' -f1; }
export_sum() { rbd export --no-progress rbd/gw0 - 2>/dev/null | head -c $(( $1 + $2 )) | tail -c "$2" | sha256sum | cut -d' ' -f1; }
# fio_verify NAME DEV OFFSET_MIB SIZE_MIB: random 4-64 KiB writes, crc32c verify; result NAME=ok|fail
fio_verify() {
  if fio --name="$1" --filename="$2" --rw=randwrite --bsrange=4k-64k --iodepth=8 --ioengine=libaio --direct=1 \
         --offset="$3"M --size="$4"M --verify=crc32c --verify_fatal=1 --output=$S/"$1".out >/dev/null 2>&1 &&
     grep -q 'err= 0' $S/"$1".out; then
    result "$1" ok
  else
    result "$1" fail
    grep -E 'err=|verify|bad|crc' $S/"$1".out | head -12 | sed "s/^/@@LOG $1 /"
  fi
}

GW_A_PID= GW_B_PID=
finish() {
  [ -n "$GW_A_PID" ] && kill -KILL "$GW_A_PID" 2>/dev/null
  RUNNER_PID=$GW_B_PID RUNNER_LOG=$S/gw-b.log runner_stop
  teardown_all && result teardown ok || result teardown fail
  result runner_log_errors "$(cat $S/gw-a.log $S/gw-b.log 2>/dev/null | grep -c '"level":[56]0')"
  dump_log gateway_a $S/gw-a.log 30
  dump_log gateway_b $S/gw-b.log 30
  bash "$TCMU_TS_ROOT/scripts/ceph.sh" stop $CEPH_DIR >/dev/null 2>&1
  exit "${1:-0}"
}

ceph_start $CEPH_DIR || finish 1
check rbd_create rbd create rbd/gw0 --size 1G || finish 1
result features "$(rbd info rbd/gw0 2>/dev/null | sed -n 's/^\s*features: //p' | tr -d ' ')"

# One TCMU device per gateway, each claimed by one daemon (--subtypes).
# cmd_time_out 120 s: a command waiting for a dead owner's lock (up to the
# cluster's 30 s watch timeout, more under TCG) must not be failed by the kernel.
for g in a b; do
  printf '[daemon]\ncontrol_socket = "/run/gw-%s/control.sock"\n[daemon.handlers]\ngw%s = "%s"\n' \
    $g $g "$TCMU_TS_ROOT/dist/handlers/rbd/index.js" > /run/gw-$g.toml
  tcmu_create gw$g "gw$g/rbd/gw0;conf=$CEPH_CONF" $SIZE nl_reply_supported=-1 >/dev/null || { result create_$g fail; finish 1; }
  echo 120 > "$CFG/core/user_1/gw$g/attrib/cmd_time_out" || { result cmd_time_out_$g fail; finish 1; }
done
RUNNER_LOG=$S/gw-a.log RUNNER_EXPECT=$(uio_of gwa) RUNNER_TIMEOUT=300 runner_start --config /run/gw-a.toml --subtypes gwa \
  && result gateway_a ok || { result gateway_a fail; finish 1; }
GW_A_PID=$RUNNER_PID
RUNNER_LOG=$S/gw-b.log RUNNER_EXPECT=$(uio_of gwb) RUNNER_TIMEOUT=300 runner_start --config /run/gw-b.toml --subtypes gwb \
  && result gateway_b ok || { result gateway_b fail; finish 1; }
GW_B_PID=$RUNNER_PID
RUNNER_PID=

dev_a=$(loop_export gwa 0) && result path_a "$dev_a" || { result path_a fail; finish 1; }
dev_b=$(LOOP_WWN=$LOOP_B_WWN LOOP_NEXUS=$LOOP_B_NEXUS loop_export gwb 0) && result path_b "$dev_b" || { result path_b fail; finish 1; }
# The initiator's own command timer (30 s by default) must also outlast a lock hand-over from a dead owner.
for d in "$dev_a" "$dev_b"; do echo 120 > /sys/block/${d#/dev/}/device/timeout; done
result watchers "$(rbd status rbd/gw0 2>/dev/null | grep -c 'watcher=')"

# ALUA port groups: gateway A's LUN in group 1, B's in group 2, implicit transitions.
alua_state() { cat "$CFG/core/user_1/gw$1/alua/gw$1/alua_access_state" 2>/dev/null; }
for g in a b; do
  d=$CFG/core/user_1/gw$g
  wwn=$([ $g = a ] && echo "$LOOP_WWN" || echo "$LOOP_B_WWN")
  mkdir "$d/alua/gw$g" && echo $([ $g = a ] && echo 1 || echo 2) > "$d/alua/gw$g/tg_pt_gp_id" \
    && echo 1 > "$d/alua/gw$g/alua_access_type" && echo "gw$g" > "$CFG/loopback/$wwn/tpgt_1/lun/lun_0/alua_tg_pt_gp" \
    && result alua_group_$g ok || result alua_group_$g fail
done
for d in "$dev_a" "$dev_b"; do for i in 1 2 3; do sg_turs "$d" >/dev/null 2>&1 && break; done; done # the INQUIRY DATA HAS CHANGED unit attentions
result alua_tpgs "$(tpgs "$dev_a")$(tpgs "$dev_b")"
result alua_vpd_groups "$(vpd83_port "$dev_a" 'Target port group') $(vpd83_port "$dev_b" 'Target port group')"

# -- 1. both paths written at once -------------------------------------------------
t0=$(date +%s)
fio_verify fio_a "$dev_a" 0 16 &
fa=$!
fio_verify fio_b "$dev_b" 32 16 &
fb=$!
wait $fa $fb
result both_paths_sec $(( $(date +%s) - t0 ))
result lock_owner_after_both "$(rbd lock ls rbd/gw0 2>/dev/null | awk 'NR > 2 { print $1 }' | head -1)"
for region in 0 32; do
  a=$(read_sum "$dev_a" $((region * MiB)) $((16 * MiB)))
  b=$(read_sum "$dev_b" $((region * MiB)) $((16 * MiB)))
  e=$(export_sum $((region * MiB)) $((16 * MiB)))
  result region_${region}_same "$([ "$a" = "$b" ] && [ "$a" = "$e" ] && echo yes || echo "no a=$a b=$b export=$e")"
done

# -- 2. the owner dies; I/O goes on through the other path ------------------------
# A writes last, so it holds the lock when it is killed (with I/O through B
# already running, A would hand the lock over before it dies).
head -c $MiB /dev/urandom > $S/marker
dd if=$S/marker of="$dev_a" bs=$MiB seek=200 oflag=direct conv=notrunc status=none && result marker_via_a ok || result marker_via_a fail
result owner_before_kill "$(rbd lock ls rbd/gw0 2>/dev/null | awk 'NR > 2 { print $1 }' | head -1)"
# A holds the lock: its group reports active/optimized, B's active/non-optimized once B
# looked (an INQUIRY makes it look; it answers from configfs if the cluster is slow to say).
b_non_optimized() { [ "$(alua_state b)" = 1 ]; }
sg_inq "$dev_b" >/dev/null 2>&1
wait_for 30 b_non_optimized
result alua_rtpg_owner_a "$(rtpg_state "$dev_a") $(rtpg_state "$dev_b")"
result alua_configfs_owner_a "$(alua_state a) $(alua_state b)"
result watchers_before_kill "$(rbd status rbd/gw0 2>/dev/null | grep -o 'client\.[0-9]*' | tr '\n' ' ')"
kill -KILL "$GW_A_PID" && result kill_a ok || result kill_a fail
wait "$GW_A_PID" 2>/dev/null
GW_A_PID=
t0=$(date +%s)
# Seconds until B's group is active/optimized, counted from the start of the failover I/O.
( t=0; while [ "$(alua_state b)" != 0 ] && [ $t -lt 300 ]; do sleep 1; t=$((t + 1)); done; echo $t > $S/alua_flip_sec ) &
flip_watch=$!
fio_verify fio_b_failover "$dev_b" 64 32
result failover_fio_sec $(( $(date +%s) - t0 ))
# B took the lock with the failover I/O: its group turned active/optimized without being asked.
wait $flip_watch
result alua_configfs_after_failover "$(alua_state b)"
result alua_flip_sec "$(cat $S/alua_flip_sec)"
result alua_rtpg_after_failover "$(rtpg_state "$dev_b")"
grep 'ALUA' $S/gw-b.log | tail -4 | cut -c1-300 | sed 's/^/@@LOG gateway_b_alua /'
result marker_via_b "$([ "$(read_sum "$dev_b" $((200 * MiB)) $MiB)" = "$(sha256sum < $S/marker | cut -d' ' -f1)" ] && echo yes || echo no)"
ceph osd blocklist ls 2>&1 | head -5 | sed 's/^/@@LOG blocklist /'
result blocklisted "$(ceph osd blocklist ls 2>/dev/null | grep -c ':')"
result watchers_after_kill "$(rbd status rbd/gw0 2>/dev/null | grep -o 'client\.[0-9]*' | tr '\n' ' ')"
grep -i 'lock\|blocklist\|fenc' $S/gw-b.log | tail -8 | cut -c1-300 | sed 's/^/@@LOG gateway_b_lock /'
result lock_owner_after_kill "$(rbd lock ls rbd/gw0 2>/dev/null | awk 'NR > 2 { print $1 }' | head -1)"
result region_64_same "$([ "$(read_sum "$dev_b" $((64 * MiB)) $((32 * MiB)))" = "$(export_sum $((64 * MiB)) $((32 * MiB)))" ] && echo yes || echo no)"
finish 0
