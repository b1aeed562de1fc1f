# Guest-side fio benchmarking helpers (bash, sourced after guest-lib.sh).
# Emulation (TCG) makes absolute numbers drift between boots, so LUNs are
# always compared inside one boot, interleaved A B, B A, ... and read as ratios.
# Output lines: @@BENCH job=<job> lun=<label> round=<n> iops=<x> mbps=<y>

BENCH_RUNTIME=${BENCH_RUNTIME:-10}   # seconds per fio run
BENCH_ROUNDS=${BENCH_ROUNDS:-4}      # rounds per job (A B, then B A, ...)
BENCH_SIZE=${BENCH_SIZE:-256M}       # region of each LUN the jobs touch
BENCH_JOBS=${BENCH_JOBS:-"randread4k randwrite4k seqread1m seqwrite1m"}
BENCH_WARMUP=${BENCH_WARMUP:-3}     # seconds of untimed warm-up per LUN and pattern (0: none)

_bench_args() {
  case "$1" in
    randread4k)  echo "--rw=randread --bs=4k --iodepth=16" ;;
    randwrite4k) echo "--rw=randwrite --bs=4k --iodepth=16" ;;
    seqread1m)   echo "--rw=read --bs=1M --iodepth=8" ;;
    seqwrite1m)  echo "--rw=write --bs=1M --iodepth=8" ;;
    *) return 1 ;;
  esac
}

# bench_prefill DEV: write the benchmarked region once, so reads hit data
# rather than holes in the backing file.
bench_prefill() {
  fio --name=prefill --eta=never --filename="$1" --rw=write --bs=1M --iodepth=8 --ioengine=libaio \
      --direct=1 --size="$BENCH_SIZE" --output=/dev/null
}

# bench_warmup DEV...: short untimed random and sequential reads and writes on
# every LUN before anything is measured. A freshly started runner's V8 takes
# several seconds under TCG to compile its hot path (the first timed job on a
# cold runner measured ~0.3x of the same job a minute later); every LUN,
# the in-kernel reference included, gets the same warm-up.
bench_warmup() {
  [ "${BENCH_WARMUP:-0}" != 0 ] || return 0
  local dev rw
  for dev in "$@"; do
    for rw in randread randwrite read write; do
      fio --name=warmup --eta=never --filename="$dev" --rw=$rw --bs=4k --iodepth=16 --ioengine=libaio \
          --direct=1 --size="$BENCH_SIZE" --time_based --runtime="$BENCH_WARMUP" --output=/dev/null || return 1
    done
  done
}

# bench_job JOB DEV -> "iops mbps"  (terse v3: read bw/iops are fields 7/8,
# write bw/iops 48/49; bw in KiB/s)
bench_job() {
  local args; args=$(_bench_args "$1") || { echo "bench_job: unknown job $1" >&2; return 1; }
  # shellcheck disable=SC2086
  fio --name="$1" --eta=never --filename="$2" $args --ioengine=libaio --direct=1 --size="$BENCH_SIZE" \
      --time_based --runtime="$BENCH_RUNTIME" --ramp_time=1 --randrepeat=0 \
      --output-format=terse --terse-version=3 2>/dev/null |
    awk -F';' '{ r = $8 + $49; b = ($7 + $48) / 1024; printf "%.0f %.1f\n", r, b }'
}

# bench_compare LABEL_A DEV_A LABEL_B DEV_B: every job, interleaved A B, B A,
# A B ... so that a drift in the machine's speed favours neither side.
bench_compare() {
  local la="$1" da="$2" lb="$3" db="$4" job round out pairs
  for job in $BENCH_JOBS; do
    for round in $(seq 1 "$BENCH_ROUNDS"); do
      if [ $((round % 2)) = 1 ]; then pairs=("$la $da" "$lb $db"); else pairs=("$lb $db" "$la $da"); fi
      for pair in "${pairs[@]}"; do
        set -- $pair
        out=$(bench_job "$job" "$2") || out="0 0"
        set -- "$1" $out
        echo "@@BENCH job=$job lun=$1 round=$round iops=$2 mbps=$3"
      done
    done
  done
}
