# Guest scenario for `scripts/bench vm`: the in-kernel fileio backstore (the
# reference), a tcmu-ts `file` LUN and, unless BENCH_REFERENCE=none, the same
# kind of LUN served by Debian's tcmu-runner (the C reference runner). All are
# backed by 1 GiB sparse files on the scratch ext4; fio runs each job on each
# LUN in a rotated order.
#
# Two tcm_loop targets, because LIO's completion affinity is a per-target
# setting (param/cmd_completion_affinity):
# - target A, kernel default (-1, complete on the submitting CPU): fileio, the
#   reference, as an administrator gets it without tuning;
# - target B, BENCH_COMPLETION_AFFINITY (default current = -2, complete on the
#   CPU that completed the command; what `tcmu-ts lun export` sets on
#   tcm_loop): the TCMU LUNs, whose commands complete on the runner's CPU,
#   and fileio again ("fileio-cur") as the control that shows whether the
#   setting changes fileio itself (it completes inline, on the submitter).
#
# fileio runs buffered (fd_buffered_io=1, write cache on) because tcmu-ts's
# file handler goes through the page cache too; set BENCH_FILEIO_OPTS="" for
# the O_DSYNC default.
#
# BENCH_TCMU_RUNNER_DIR (scripts/vm/build-tcmu-runner.sh) puts an upstream
# tcmu-runner build's own `file` handler in Debian's place (`scripts/bench
# vm-file-ref`, issue 22's second table).
#
# tcmu-runner as packaged by Debian has no plain file handler; its qcow
# handler serves a file that is not a qcow image as raw ("not qcow: will
# treat as raw"), with synchronous pread/pwrite on its worker threads. Both
# runners are up together, each serving only its own LUN, so every TCMU
# device is created with nl_reply_supported=-1: neither runner's netlink
# answers (or the other's refusals) decide whether a device comes up.
#
# Both TCMU LUNs take up to BENCH_MAX_SECTORS blocks per command (see
# bench_tcmu_luns).
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-8}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
SIZE=1073741824
S=/mnt/scratch
fail() { bench_fail "$@"; }
bench_reference

bench_affinity
bench_tcmu_luns naa.5001405aa0000011 naa.5001405aa0000012 $affinity
# At `submitter` target B is set as target A is: fileio-cur would repeat fileio.
[ "$BENCH_COMPLETION_AFFINITY" = submitter ] || luns+=(fileio-cur "$(tcmu_target_export ref 2)")
for ((i = 1; i < ${#luns[@]}; i += 2)); do
  [ -b "${luns[$i]}" ] || fail "a LUN has no block device (${luns[*]})"
done
version=; [ "$reference" = tcmu-runner ] && version=" reference_version=$(tr_version)"
erms=no; grep -qw erms /proc/cpuinfo && erms=yes
fileio_opts=${BENCH_FILEIO_OPTS-fd_buffered_io=1}
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE warmup=${BENCH_WARMUP}s cpus=$(nproc) clocksource=$(bench_clocksource) erms=$erms hw_max_sectors=$TCMU_MAX_SECTORS reference=$reference$version completion_affinity=fileio:submitter,others:$BENCH_COMPLETION_AFFINITY fileio_opts=${fileio_opts:-none_(O_DSYNC)}"
# fileio-cur is the fileio backstore again: already filled
BENCH_PREFILLED=fileio-cur bench_prepare "${luns[@]}"
bench_compare "${luns[@]}"
teardown_all
runner_stop
tr_stop
