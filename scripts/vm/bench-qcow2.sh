# Guest scenario for `scripts/bench qcow2`: tcmu-ts's qcow2 handler vs Debian
# tcmu-runner's qcow handler, same boot, on the ext4 scratch disk (tcmu-runner's
# qcow handler needs fallocate modes tmpfs lacks).
#
# The two runners are never up together while measuring: each phase starts one
# runner, creates a FRESH qcow2 image and a TCMU device for it, exports it on
# tcm_loop, runs the fio jobs, tears down and stops that runner. Phases are
# interleaved A B A B. Devices are created with nl_reply_supported=-1 so that
# neither `enable` nor `rmdir` waits for a netlink reply (the module-wide
# "runner replies" flag set by whichever runner ran before would otherwise make
# the kernel wait for a reply nobody may send).
#
# Jobs (4k, qd16, libaio, direct):
#   randwrite4k-fresh  random writes over the whole 1 GiB of a fresh image (allocating)
#   randwrite4k-alloc  random writes over BENCH_SIZE after a sequential prefill
#   randread4k-alloc   random reads over the same allocated region
# Afterwards, a coexistence probe: both runners up at once (tcmu-ts limited to
# --subtypes qcow2,file), devices created WITH netlink replies, to see who
# answers what. Output: @@BENCH / @@BENCH-INFO / @@COEXIST lines.
set -u
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
S=/mnt/scratch
SIZE=1073741824
TR_OUT=$S/tcmu-runner.out

fail() {
  echo "bench: $*" >&2
  teardown_all; runner_stop; tr_stop
  dump_log runner "$RUNNER_LOG" 30; dump_log tcmu-runner "$TR_LOG" 30; dump_log tcmu-runner-out "$TR_OUT" 30
  exit 1
}

# phase LABEL ROUND: one runner, one fresh image, all jobs.
phase() {
  local label="$1" round="$2" img="$S/bench-$1-$2.qcow2" cfg uio pid dev out
  rm -f "$img"
  # qcow2 v2 (compat=0.10), 64 KiB clusters: what both handlers read
  qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=65536 "$img" 1G || fail "qemu-img create"
  case "$label" in
    tcmu-ts) cfg="qcow2/$img" ;;
    tcmu-runner) cfg="qcow/$img" ;;
  esac
  tcmu_create b0 "$cfg" $SIZE nl_reply_supported=-1 >/dev/null || fail "$label: tcmu device"
  uio=$(uio_of b0) || fail "$label: no uio"
  case "$label" in
    tcmu-ts) RUNNER_EXPECT="$uio" runner_start --subtypes qcow2,file || fail "tcmu-ts serve"; pid=$RUNNER_PID ;;
    tcmu-runner) tr_start; pid=$TR_PID
      wait_for 60 holds_uio "$pid" "$uio" || fail "tcmu-runner did not open $uio" ;;
  esac
  dev=$(loop_export b0 0) || fail "$label: export"
  out=$(BENCH_SIZE=1G bench_job randwrite4k "$dev") || out="0 0"; set -- $out
  echo "@@BENCH job=randwrite4k-fresh lun=$label round=$round iops=$1 mbps=$2"
  bench_prefill "$dev" || fail "$label: prefill"
  out=$(bench_job randwrite4k "$dev") || out="0 0"; set -- $out
  echo "@@BENCH job=randwrite4k-alloc lun=$label round=$round iops=$1 mbps=$2"
  out=$(bench_job randread4k "$dev") || out="0 0"; set -- $out
  echo "@@BENCH job=randread4k-alloc lun=$label round=$round iops=$1 mbps=$2"
  teardown_all || fail "$label: teardown"
  case "$label" in
    tcmu-ts) runner_stop >/dev/null ;;
    tcmu-runner) tr_stop ;;
  esac
  echo "@@BENCH-PHASE $label round=$round image_after=$(du -k "$img" | cut -f1)KiB"
  rm -f "$img"
}

command -v tcmu-runner >/dev/null || { echo "@@BENCH-ERROR tcmu-runner not installed (apt-get install tcmu-runner)"; exit 2; }
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE cpus=$(nproc) tcmu-runner=$(tr_version) image=qcow2-v2-64k"
for round in $(seq 1 "$BENCH_ROUNDS"); do
  phase tcmu-ts "$round"
  phase tcmu-runner "$round"
done

# -- coexistence probe: both runners at once, replies required ------------------------
# enable_bg NAME CFG: create + enable in the background; "ok", "fail" or "hang" (after 30 s)
enable_bg() {
  local name="$1" cfg="$2" d="$CFG/core/user_1/$1" p n=0
  mkdir -p "$d" || { echo fail; return; }
  echo -n "dev_config=$cfg,dev_size=$SIZE,hw_max_sectors=1024" > "$d/control" || { echo fail; return; }
  ( echo 1 > "$d/enable" ) 2>/dev/null & p=$!
  while kill -0 $p 2>/dev/null && [ $n -lt 150 ]; do sleep 0.2; n=$((n+1)); done
  if kill -0 $p 2>/dev/null; then echo hang; return; fi
  wait $p && echo ok || echo fail
}
RUNNER_LOG=$S/runner-coexist.log
runner_start --subtypes qcow2,file >/dev/null 2>&1 || echo "@@COEXIST tcmu-ts did not start"
sleep 1
tr_start
sleep 3
hung=0
for i in 1 2 3; do
  qemu-img create -q -f qcow2 -o compat=0.10 "$S/co-ts-$i.qcow2" 1G
  st=$(enable_bg cots$i "qcow2/$S/co-ts-$i.qcow2")
  served=no; u=$(uio_of cots$i) && holds_uio "$RUNNER_PID" "$u" && served=tcmu-ts
  echo "@@COEXIST try=$i subtype=qcow2 enable=$st served_by=$served"
  [ "$st" = hang ] && { hung=1; break; }
  qemu-img create -q -f qcow2 -o compat=0.10 "$S/co-tr-$i.qcow2" 1G
  st=$(enable_bg cotr$i "qcow/$S/co-tr-$i.qcow2")
  served=no; u=$(uio_of cotr$i) && holds_uio "$TR_PID" "$u" && served=tcmu-runner
  echo "@@COEXIST try=$i subtype=qcow enable=$st served_by=$served"
  [ "$st" = hang ] && { hung=1; break; }
done
grep -F '[ERROR]' "$TR_LOG" 2>/dev/null | tail -n 8 | sed 's/^/@@COEXIST-LOG tcmu-runner: /'
grep -E '"level":[56]0' "$RUNNER_LOG" 2>/dev/null | tail -n 5 | cut -c1-300 | sed 's/^/@@COEXIST-LOG tcmu-ts: /'
if [ $hung = 0 ]; then teardown_all >/dev/null 2>&1; fi
runner_stop >/dev/null 2>&1
tr_stop
exit 0
