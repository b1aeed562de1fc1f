# Guest scenario for `scripts/bench vm`: one tcm_loop target, LUN 0 the
# in-kernel fileio backstore (reference), LUN 1 a tcmu-ts `file` LUN and,
# unless BENCH_REFERENCE=none, LUN 2 the same kind of LUN served by Debian's
# tcmu-runner (the C reference runner). All are backed by 1 GiB sparse files
# on the scratch ext4; fio runs each job on each LUN in a rotated order.
#
# fileio runs buffered (fd_buffered_io=1, write cache on) because tcmu-ts's
# file handler goes through the page cache too; set BENCH_FILEIO_OPTS="" for
# the O_DSYNC default.
#
# tcmu-runner as packaged by Debian has no plain file handler; its qcow
# handler serves a file that is not a qcow image as raw ("not qcow: will
# treat as raw"), with synchronous pread/pwrite on its worker threads. Both
# runners are up together, each serving only its own LUN, so every TCMU
# device is created with nl_reply_supported=-1: neither runner's netlink
# answers (or the other's refusals) decide whether a device comes up.
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-8}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
SIZE=1073741824
S=/mnt/scratch
reference=${BENCH_REFERENCE:-tcmu-runner}
fail() {
  echo "bench: $*" >&2
  teardown_all; runner_stop; tr_stop
  dump_log runner "$RUNNER_LOG"; dump_log tcmu-runner "$TR_LOG" 30; dump_log tcmu-runner-out "$TR_OUT" 30
  exit 1
}
case "$reference" in
  tcmu-runner) command -v tcmu-runner >/dev/null || fail "tcmu-runner not installed (BENCH_REFERENCE=none runs without it)" ;;
  none) ;;
  *) fail "BENCH_REFERENCE must be tcmu-runner or none, not '$reference'" ;;
esac

truncate -s $SIZE $S/ref.img $S/tcmu.img
fileio_create ref $S/ref.img $SIZE "${BENCH_FILEIO_OPTS-fd_buffered_io=1}" || fail "fileio"
tcmu_create tcmu file/$S/tcmu.img $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-ts device"
RUNNER_EXPECT=$(uio_of tcmu) runner_start --subtypes file || fail "runner did not start"
luns=(fileio "$(loop_export ref 0)" tcmu-ts "$(loop_export tcmu 1)")
if [ "$reference" = tcmu-runner ]; then
  truncate -s $SIZE $S/reference.img
  tcmu_create reference qcow/$S/reference.img $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-runner device"
  tr_start
  wait_for 60 holds_uio "$TR_PID" "$(uio_of reference)" || fail "tcmu-runner did not open its device"
  luns+=(tcmu-runner "$(loop_export reference 2)")
fi
for dev in "${luns[@]:1:1}" "${luns[@]:3:1}" "${luns[@]:5:1}"; do
  [ -b "$dev" ] || fail "a LUN has no block device (${luns[*]})"
done
version=; [ "$reference" = tcmu-runner ] && version=" reference_version=$(tcmu-runner -V 2>&1 | head -1 | tr ' ' '_')"
erms=no; grep -qw erms /proc/cpuinfo && erms=yes
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE warmup=${BENCH_WARMUP}s cpus=$(nproc) erms=$erms reference=$reference$version"
for i in 1 3 5; do
  [ -n "${luns[$i]:-}" ] || continue
  bench_prefill "${luns[$i]}" || fail "prefill ${luns[$((i - 1))]}"
  bench_warmup "${luns[$i]}" || fail "warm-up ${luns[$((i - 1))]}"
done
bench_compare "${luns[@]}"
teardown_all
runner_stop
tr_stop
