# Guest scenario: an rbd LUN through a daemon crash, a cluster outage and
# snapshots (issue 21 acceptance 2 and 6, snapshots, GET LBA STATUS). A
# single-node cluster from scripts/ceph.sh on the scratch disk; image
# rbd/ha0 (default features: exclusive-lock, object-map, fast-diff) served by
# `tcmu-ts serve` on tcm_loop. Sourced after guest-lib.sh.
#   1. SIGKILL and restart the daemon 5 times under fio verify load; before
#      each kill a 4 KiB marker written O_DIRECT (acknowledged, never
#      flushed). The new process fences its predecessor, which still owns the
#      image's exclusive lock, instead of waiting for the cluster to expire it.
#   2. The OSD stops: a read and a write fail within osd_op_timeout with
#      ABORTED COMMAND, the daemon still answers, and everything works again
#      once the OSD is back.
#   3. `tcmu-ts snapshot create|list|revert|delete` on the LUN are RBD
#      snapshots; GET LBA STATUS reports written objects mapped.
set -u
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch
CEPH_DIR=$S/ceph
export CEPH_CONF=$CEPH_DIR/ceph.conf
MiB=1048576
OP_TIMEOUT=15
MARK_MB=900   # marker i at 900 MiB + i MiB

read_sum() { dd if="$1" bs=4096 skip=$(( $2 / 4096 )) count=$(( $3 / 4096 )) iflag=direct status=none | sha256sum | cut -d' ' -f1; }
# sg_raw READ(10)/WRITE(10) of 8 blocks at LBA $2: prints "rc seconds sense-key-line"
raw_io() { local dev=$1 lba=$2 op=$3 t0 out rc hex
  hex=$(printf '%08x' "$lba"); t0=$(date +%s.%N)
  if [ "$op" = read ]; then
    out=$(timeout 300 sg_raw -r 4096 -t 300 "$dev" 28 00 ${hex:0:2} ${hex:2:2} ${hex:4:2} ${hex:6:2} 00 00 08 00 2>&1); rc=$?
  else
    out=$(timeout 300 sg_raw -s 4096 -i $S/raw-data -t 300 "$dev" 2a 00 ${hex:0:2} ${hex:2:2} ${hex:4:2} ${hex:6:2} 00 00 08 00 2>&1); rc=$?
  fi
  echo "$rc $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') $(grep -m1 -io 'aborted command\|not ready\|medium error\|hardware error' <<<"$out" | tr ' ' _)"
  printf '%s\n' "$out" | tail -5 | sed "s/^/@@LOG raw_$op /" >&9; }

finish() {
  touch $S/kills.done
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  result runner_log_errors "$(cat $S/runner*.log "$RUNNER_LOG" 2>/dev/null | grep -c '"level":[56]0')"
  dump_log runner "$RUNNER_LOG" 40
  bash "$TCMU_TS_ROOT/scripts/ceph.sh" stop $CEPH_DIR >/dev/null 2>&1
  exit "${1:-0}"
}

ceph_start $CEPH_DIR || finish 1
check rbd_create rbd create rbd/ha0 --size 1G || finish 1
result features "$(rbd info rbd/ha0 2>/dev/null | sed -n 's/^\s*features: //p' | tr -d ' ')"

runner_start && result runner ok || { result runner fail; finish 1; }
# cmd_time_out 120 s: the kernel fails a command left in the ring once it is
# older than that, so kill-to-serving must stay below it (docs/ADMIN.md).
out=$(timeout 300 $TS lun create h0 --backstore rbd --path rbd/ha0 --option conf=$CEPH_CONF --option osd_op_timeout=$OP_TIMEOUT \
      --size 1G --cmd-timeout 120 2>&1) && result create ok || { result create fail; printf '%s\n' "$out" | sed 's/^/@@LOG lun_create /'; finish 1; }
dev=$(loop_export h0 0) && result export "$dev" || { result export fail; finish 1; }
result cache_type "$(cat /sys/block/${dev#/dev/}/device/scsi_disk/*/cache_type 2>/dev/null)"

# -- 1. SIGKILL under load ---------------------------------------------------------
rm -f $S/kills.done $S/fio-failed.out
( n=0 bad=0
  while [ ! -f $S/kills.done ]; do
    off=$(( (n % 40) * 16 )); n=$((n+1))
    fio --name=kill$n --filename="$dev" --rw=randwrite --bsrange=4k-64k --iodepth=16 \
        --ioengine=libaio --direct=1 --size=16M --offset=${off}M --verify=crc32c --verify_fatal=1 \
        --output=$S/fio$n.out >/dev/null 2>&1 || { bad=$((bad+1)); cp $S/fio$n.out $S/fio-failed.out; }
    grep -q 'err= 0' $S/fio$n.out || bad=$((bad+1))
  done
  echo "$n $bad" > $S/fio.summary ) &
FIO=$!
kills=0 busy_kills=0 restarts=0 markers=0 marker_now=0 restart_ms=""
for i in 1 2 3 4 5; do
  sleep 3
  head -c 4096 /dev/urandom > $S/marker$i
  dd if=$S/marker$i of="$dev" bs=4096 seek=$(( (MARK_MB * MiB + i * MiB) / 4096 )) oflag=direct conv=notrunc status=none && markers=$((markers+1))
  wait_for 30 dev_busy "$dev" && busy_kills=$((busy_kills+1))
  t_kill=$(date +%s%N)
  kill -KILL "$RUNNER_PID" && kills=$((kills+1))
  wait "$RUNNER_PID" 2>/dev/null
  RUNNER_PID=
  RUNNER_TIMEOUT=120 RUNNER_LOG=$S/runner$i.log runner_start && restarts=$((restarts+1))
  [ "$(read_sum "$dev" $(( MARK_MB * MiB + i * MiB )) 4096)" = "$(sha256sum < $S/marker$i | cut -d' ' -f1)" ] && marker_now=$((marker_now+1))
  # kill to the first read served by the new process
  restart_ms="$restart_ms $(( ($(date +%s%N) - t_kill) / 1000000 ))"
done
touch $S/kills.done
wait $FIO
read -r fio_jobs fio_bad < $S/fio.summary
result kills "$kills"
result kills_under_io "$busy_kills"
result restarts "$restarts"
result restart_ms "${restart_ms# }"
result markers_written "$markers"
result markers_after_restart "$marker_now"
result fio_jobs "$fio_jobs"
result fio_failed "$fio_bad"
[ -f $S/fio-failed.out ] && grep -E 'err=|verify|bad|crc' $S/fio-failed.out | head -12 | sed 's/^/@@LOG fio /'
result fenced "$(cat $S/runner[1-5].log 2>/dev/null | grep -c "previous daemon process, which is gone")"
intact=0
for i in 1 2 3 4 5; do
  [ "$(read_sum "$dev" $(( MARK_MB * MiB + i * MiB )) 4096)" = "$(sha256sum < $S/marker$i | cut -d' ' -f1)" ] && intact=$((intact+1))
done
result markers_intact "$intact"
# Another librbd client sees exactly what the initiator reads.
result lun_sum "$(read_sum "$dev" 0 $((768 * MiB)))"
result export_sum "$(rbd export --no-progress rbd/ha0 - 2>/dev/null | head -c $((768 * MiB)) | sha256sum | cut -d' ' -f1)"

# -- 3. GET LBA STATUS and snapshots (before the outage: nothing else is odd) -------
# The first call may meet a pending unit attention (the restarts): ask twice, log what it said.
lba_state() { local out
  out=$(sg_get_lba_status --brief --lba="$2" "$1" 2>&1) || out=$(sg_get_lba_status --brief --lba="$2" "$1" 2>&1)
  printf '%s\n' "$out" | head -5 | sed "s/^/@@LOG lba_status_$2 /" >&9
  awk '$1 ~ /^0x/ { print $3; exit }' <<<"$out"; }
result lba_written "$(lba_state "$dev" $(( (MARK_MB * MiB + MiB) / 512 )))"
result lba_unwritten "$(lba_state "$dev" $(( 1000 * MiB / 512 )))"

SNAP_AT=$(( 950 * MiB ))
head -c $MiB /dev/urandom > $S/snap-old; head -c $MiB /dev/urandom > $S/snap-new
dd if=$S/snap-old of="$dev" bs=$MiB seek=950 oflag=direct conv=notrunc status=none
check snap_create timeout 300 $TS snapshot create h0 s1
result snap_rbd_ls "$(rbd snap ls rbd/ha0 2>/dev/null | awk 'NR > 1 { print $2 }' | tr '\n' ' ')"
result snap_list "$(timeout 300 $TS snapshot list h0 --json 2>/dev/null | tr -d ' \n' | grep -o '"name":"[^"]*"' | tr '\n' ' ')"
dd if=$S/snap-new of="$dev" bs=$MiB seek=950 oflag=direct conv=notrunc status=none
result snap_new_written "$([ "$(read_sum "$dev" $SNAP_AT $MiB)" = "$(sha256sum < $S/snap-new | cut -d' ' -f1)" ] && echo yes || echo no)"
check snap_revert timeout 300 $TS snapshot revert h0 s1
sg_turs "$dev" >/dev/null 2>&1   # takes the MEDIUM MAY HAVE CHANGED unit attention
result snap_reverted "$([ "$(read_sum "$dev" $SNAP_AT $MiB)" = "$(sha256sum < $S/snap-old | cut -d' ' -f1)" ] && echo yes || echo no)"
check snap_delete timeout 300 $TS snapshot delete h0 s1
result snap_after_delete "$(rbd snap ls rbd/ha0 2>/dev/null | awk 'NR > 1 { print $2 }' | tr '\n' ' ')"

# -- 2. the cluster goes away --------------------------------------------------------
head -c 4096 /dev/urandom > $S/raw-data
OUT_LBA=$(( 980 * MiB / 512 ))
osd_pid=$(cat $CEPH_DIR/run/osd.*.pid 2>/dev/null | head -1)
kill -TERM "$osd_pid" 2>/dev/null && wait_for 60 bash -c "! kill -0 $osd_pid" && result osd_stopped ok || result osd_stopped fail
read -r rc sec key <<<"$(raw_io "$dev" $OUT_LBA read)"
result outage_read "$rc $sec ${key:-none}"
read -r rc sec key <<<"$(raw_io "$dev" $OUT_LBA write)"
result outage_write "$rc $sec ${key:-none}"
result outage_status "$(timeout 120 $TS status >/dev/null 2>&1 && echo ok || echo fail)"
result outage_lun_state "$(timeout 120 $TS status --json 2>/dev/null | tr -d ' \n' | grep -o '"state":"[a-z]*"' | head -1)"
t0=$(date +%s)
if CEPH_NO_MGR=1 CEPH_TIMEOUT=600 bash "$TCMU_TS_ROOT/scripts/ceph.sh" start $CEPH_DIR >/tmp/ceph-restart.log 2>&1; then
  result osd_restarted ok
else
  result osd_restarted fail; dump_log ceph_restart /tmp/ceph-restart.log
fi
result osd_restart_sec $(( $(date +%s) - t0 ))
read -r rc sec key <<<"$(raw_io "$dev" $OUT_LBA write)"
result after_write "$rc"
result after_read_back "$([ "$(read_sum "$dev" $(( OUT_LBA * 512 )) 4096)" = "$(sha256sum < $S/raw-data | cut -d' ' -f1)" ] && echo yes || echo no)"
check after_fio fio --name=after --filename="$dev" --rw=randwrite --bs=4k --iodepth=8 --ioengine=libaio --direct=1 \
  --size=8M --offset=700M --verify=crc32c --verify_fatal=1 --output-format=terse --terse-version=3

result hung_tasks "$(dmesg | grep -c 'blocked for more than')"
dmesg | grep -iE 'tcmu|I/O error|blocked|abort' | tail -15 | sed 's/^/@@LOG dmesg /'
finish 0
