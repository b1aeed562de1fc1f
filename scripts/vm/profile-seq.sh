# Guest scenario for `scripts/bench vm-profile`: where the guest's CPU goes
# during 1 MiB sequential I/O (qd8) on fileio, a tcmu-ts `file` LUN and
# (unless BENCH_REFERENCE=none) Debian tcmu-runner's LUN, same boot, same
# LUN set as bench-file-vs-fileio.sh (bench_tcmu_luns). For each LUN and
# job, bench_profile (bench-lib.sh): fio for BENCH_RUNTIME seconds under
# `perf record -a`; @@PROF lines by thread name and by symbol.
# BENCH_PROFILE_JOBS: jobs from bench-lib.sh (default seqread1m seqwrite1m);
# BENCH_PROFILE_COMMS: the runner threads broken down by library and symbol
# (default node); BENCH_COMPLETION_AFFINITY: the TCMU LUNs' target, current
# (the default) or submitter (bench-lib.sh).
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-8}
BENCH_WARMUP=${BENCH_WARMUP:-3}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
BENCH_PROFILE_JOBS=${BENCH_PROFILE_JOBS:-"seqread1m seqwrite1m"}
SIZE=1073741824
S=/mnt/scratch
fail() { bench_fail "$@"; }
bench_profile_setup
bench_reference

bench_affinity
echo "@@PROF # kernel=$(uname -r) clocksource=$(bench_clocksource) cpus=$(nproc) runtime=${BENCH_RUNTIME}s completion_affinity=fileio:submitter,others:$BENCH_COMPLETION_AFFINITY"
bench_tcmu_luns naa.5001405aa0000071 naa.5001405aa0000072 "$affinity"
bench_prepare "${luns[@]}"
bench_profile_luns "${luns[@]}"
teardown_all
runner_stop
tr_stop
