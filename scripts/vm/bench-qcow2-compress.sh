# Guest scenario for `scripts/bench compress-vm`: compressed qcow2 LUNs
# against an uncompressed one, same boot, same tcm_loop target, fio jobs in a
# rotated order (bench-lib.sh):
#   qcow2        tcmu-ts `qcow2/PATH`, the image made by `qemu-img convert`
#                (the reference: what compression costs)
#   zstd, zlib   tcmu-ts `qcow2/PATH;compress=zstd|zlib`, images made by
#                `qemu-img convert -c` (compression_type zstd / zlib)
#   tcmu-runner  Debian's tcmu-runner, its qcow handler over a copy of the
#                zlib `convert -c` image (unless BENCH_REFERENCE=none); if it
#                cannot read that image, over an uncompressed copy instead
#                (label tcmu-runner-plain, and a note in the table's header)
# Every LUN starts from the same 256 MiB of fio data that compresses to about
# 40% (BENCH_FIO_DATA, also what every write carries). Automatic compaction
# is off on the compressed LUNs: it would run on a LUN waiting for its turn
# and take CPU from the LUN being measured. Partial writes are staged
# (partial_writes=stage, the daemon's default with automatic compaction):
# stored uncompressed, up to 64 MiB per LUN, then recompressed at once. The
# deferred cost, compressing what is still staged at the end, is measured
# after the jobs with `tcmu-ts image compact` (@@BENCH-DEFERRED lines).
# Output: @@BENCH lines for bench-table.sh.
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-4}
BENCH_FIO_DATA=${BENCH_FIO_DATA:---buffer_compress_percentage=60 --refill_buffers}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
SIZE=$((512 * 1048576))
S=/mnt/scratch/bench-compress
fail() { bench_fail "$@"; }
bench_reference

mkdir -p $S
# shellcheck disable=SC2086
fio --name=gen --eta=never --filename=$S/src.raw --rw=write --bs=1M --size="$BENCH_SIZE" $BENCH_FIO_DATA \
    --ioengine=psync --output=/dev/null || fail "generating the data"
truncate -s $SIZE $S/src.raw
qemu-img convert -f raw -O qcow2 $S/src.raw $S/plain.qcow2 || fail "convert"
qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd $S/src.raw $S/zstd.qcow2 || fail "convert -c zstd"
qemu-img convert -c -f raw -O qcow2 $S/src.raw $S/zlib.qcow2 || fail "convert -c zlib"
rm -f $S/src.raw
sizes="plain=$(stat -c %b $S/plain.qcow2) zstd=$(stat -c %b $S/zstd.qcow2) zlib=$(stat -c %b $S/zlib.qcow2)"

tcmu_create plain "qcow2/$S/plain.qcow2" $SIZE nl_reply_supported=-1 >/dev/null || fail "qcow2 device"
tcmu_create zstd "qcow2/$S/zstd.qcow2;compress=zstd;auto_compact=off;partial_writes=stage" $SIZE nl_reply_supported=-1 >/dev/null || fail "zstd device"
tcmu_create zlib "qcow2/$S/zlib.qcow2;compress=zlib;auto_compact=off;partial_writes=stage" $SIZE nl_reply_supported=-1 >/dev/null || fail "zlib device"
RUNNER_EXPECT="$(uio_of plain) $(uio_of zstd) $(uio_of zlib)" runner_start --subtypes qcow2 || fail "runner did not start"
luns=(qcow2 "$(loop_export plain 0)" zstd "$(loop_export zstd 1)" zlib "$(loop_export zlib 2)")
refnote=
if [ "$reference" = tcmu-runner ]; then
  # Debian's tcmu-runner 1.5.4 fails some reads of `convert -c` images
  # ("qcow_preadv: decompression failure", seen on the last data cluster), so
  # the compressed image is read whole first; if that fails, the reference is
  # measured on an uncompressed copy instead and the table says so.
  cp --sparse=always $S/zlib.qcow2 $S/reference.qcow2
  cp --sparse=always $S/plain.qcow2 $S/reference-plain.qcow2
  tcmu_create reference qcow/$S/reference.qcow2 $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-runner device"
  tcmu_create refplain qcow/$S/reference-plain.qcow2 $SIZE nl_reply_supported=-1 >/dev/null || fail "tcmu-runner device (plain)"
  tr_start
  wait_for 60 holds_uio "$TR_PID" "$(uio_of reference)" || fail "tcmu-runner did not open its device"
  wait_for 60 holds_uio "$TR_PID" "$(uio_of refplain)" || fail "tcmu-runner did not open its second device"
  refdev=$(loop_export reference 3) refplain=$(loop_export refplain 4)
  if dd if="$refdev" of=/dev/null bs=1M iflag=direct status=none 2>/dev/null; then
    luns+=(tcmu-runner "$refdev")
  else
    refnote=" reference_note=tcmu-runner_failed_reading_the_convert_-c_image($(grep -c 'decompression failure' "$TR_LOG")_decompression_failures),_measured_on_an_uncompressed_copy"
    luns+=(tcmu-runner-plain "$refplain")
  fi
fi
for ((i = 1; i < ${#luns[@]}; i += 2)); do
  [ -b "${luns[$i]}" ] || fail "a LUN has no block device (${luns[*]})"
done
version=; [ "$reference" = tcmu-runner ] && version=" reference_version=$(tr_version)"
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE warmup=${BENCH_WARMUP}s cpus=$(nproc) reference=$reference$version$refnote data=\"$BENCH_FIO_DATA\" image_blocks_512:$sizes auto_compact=off partial_writes=stage"
for ((i = 1; i < ${#luns[@]}; i += 2)); do
  bench_warmup "${luns[$i]}" || fail "warm-up ${luns[$((i - 1))]}"
done
bench_compare "${luns[@]}"
# The deferred part of staging: compress what the jobs left staged.
for tag in zstd zlib; do
  t0=$(date +%s.%N)
  out=$(node "$TCMU_TS_ROOT/dist/src/cli/main.js" image compact "$tag" --timeout 0 2>&1 | tail -1)
  echo "@@BENCH-DEFERRED $tag: $(echo "$(date +%s.%N) - $t0" | bc) s, tcmu-ts image compact: $out"
done
teardown_all
runner_stop
tr_stop
