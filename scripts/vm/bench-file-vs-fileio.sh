# Guest scenario for `scripts/bench vm`: one tcm_loop target, LUN 0 the
# in-kernel fileio backstore (reference), LUN 1 a tcmu-ts `file` LUN, both
# backed by 1 GiB sparse files on the scratch ext4; fio interleaved A B, B A, ...
# fileio runs buffered (fd_buffered_io=1, write cache on) because tcmu-ts's
# file handler goes through the page cache too; set BENCH_FILEIO_OPTS="" for
# the O_DSYNC default.
set -u
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
SIZE=1073741824
fail() { echo "bench: $*" >&2; teardown_all; runner_stop; dump_log runner "$RUNNER_LOG"; exit 1; }

truncate -s $SIZE /mnt/scratch/ref.img /mnt/scratch/tcmu.img
fileio_create ref /mnt/scratch/ref.img $SIZE "${BENCH_FILEIO_OPTS-fd_buffered_io=1}" || fail "fileio"
tcmu_create tcmu file//mnt/scratch/tcmu.img $SIZE >/dev/null || fail "tcmu device"
runner_start || fail "runner did not start"
ref=$(loop_export ref 0) || fail "export fileio"
dut=$(loop_export tcmu 1) || fail "export tcmu-ts"
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE warmup=${BENCH_WARMUP}s cpus=$(nproc)"
bench_prefill "$ref" && bench_prefill "$dut" || fail "prefill"
bench_warmup "$ref" "$dut" || fail "warm-up"
bench_compare fileio "$ref" tcmu-ts "$dut"
teardown_all
runner_stop
