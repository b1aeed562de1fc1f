# A/B of two tcmu-ts builds in ONE VM boot (qcow2 handler): BEFORE = a build of an
# older commit in .cache/before (git archive <commit> handlers src package.json
# tsconfig.json | tar -x -C .cache/before; ln -s ../../build .cache/before/build;
# (cd .cache/before && npx tsc -p tsconfig.json)), AFTER = this checkout. Run:
#   flock /work/vm.lock bash scripts/vm-run.sh scripts/vm/bench-qcow2-before-after.sh --timeout 2400 > out
#   bash scripts/vm/bench-table.sh before after < out
. "$TCMU_TS_ROOT/test/kernel/guest-lib.sh"
set -u
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
# rounds: BENCH_ROUNDS from bench-lib.sh (4), each round one phase per build, order alternating
S=/mnt/scratch
SIZE=1073741824
AFTER=$TCMU_TS_ROOT
BEFORE=$TCMU_TS_ROOT/.cache/before
fail() { echo "bench: $*" >&2; teardown_all; runner_stop; dump_log runner "$RUNNER_LOG" 30; exit 1; }
phase() {
  local label="$1" round="$2" img="$S/bench-$1-$2.qcow2" uio dev out
  rm -f "$img"
  qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=65536 "$img" 1G || fail "qemu-img create"
  tcmu_create b0 "qcow2/$img" $SIZE nl_reply_supported=-1 >/dev/null || fail "$label: tcmu device"
  uio=$(uio_of b0) || fail "$label: no uio"
  case "$label" in before) TCMU_TS_ROOT=$BEFORE ;; after) TCMU_TS_ROOT=$AFTER ;; esac
  RUNNER_EXPECT="$uio" runner_start --subtypes qcow2,file || fail "tcmu-ts serve"
  TCMU_TS_ROOT=$AFTER
  dev=$(loop_export b0 0) || fail "$label: export"
  out=$(BENCH_SIZE=1G bench_job randwrite4k "$dev") || out="0 0"; set -- $out
  echo "@@BENCH job=randwrite4k-fresh lun=$label round=$round iops=$1 mbps=$2"
  bench_prefill "$dev" || fail "$label: prefill"
  out=$(bench_job randwrite4k "$dev") || out="0 0"; set -- $out
  echo "@@BENCH job=randwrite4k-alloc lun=$label round=$round iops=$1 mbps=$2"
  out=$(bench_job randread4k "$dev") || out="0 0"; set -- $out
  echo "@@BENCH job=randread4k-alloc lun=$label round=$round iops=$1 mbps=$2"
  teardown_all || fail "$label: teardown"
  runner_stop >/dev/null
  echo "@@BENCH-PHASE $label round=$round image_after=$(du -k "$img" | cut -f1)KiB"
  rm -f "$img"
}
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE cpus=$(nproc) image=qcow2-v2-64k"
for round in $(seq 1 "$BENCH_ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then phase before "$round"; phase after "$round"; else phase after "$round"; phase before "$round"; fi
done
echo "@@EXIT 0"
