# Guest scenario: compressed qcow2 LUNs (issue 19 acceptance 1-3).
# zstd: a fresh `compress=zstd` LUN gets ext4 (400 MiB of the 512 MiB LUN) and
# a copy of real files (a 32 MiB sample of /usr/share/doc and 12 MiB of
# /usr/lib/python3.11's sources: under TCG the whole trees, ~300 MiB, take
# longer than the kernel suite's budget), fio verify on the
# region after the filesystem, unmount, the whole LUN read back raw, the LUN
# removed once the daemon's automatic compaction has nothing pending (the LUN
# is quiet then). Then qemu-img check / compare, and the image's allocated size
# next to `qemu-img convert -c -o compression_type=zstd` of the raw read-back.
# Then half the files are overwritten through a second serve, the served LUN
# is compacted online (`tcmu-ts image compact z1`) while fio writes and
# verifies another region, and the image is measured again the same way.
# zlib: the same first part on a 256 MiB LUN with a 16 MiB sample of /usr/share/doc.
# Sourced after guest-lib.sh; @@RESULT lines are asserted in compress-lun.test.ts.
set -u
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch
MNT=/mnt/lun
blocks() { stat -c '%b' "$1" | awk '{ print $1 * 512 }'; }   # allocated bytes (st_blocks)

# sample DIR CAP [FIND-ARGS...]: regular files under DIR (paths relative to it,
# sorted, each under 4 MiB) up to CAP bytes in all; the same list on every host
# with the same packages, and real data (text, gzip'd changelogs, sources).
sample() {
  local dir="$1" cap="$2"; shift 2
  (cd "$dir" && find . -type f -size -4M "$@" -print0 | sort -z | xargs -0 stat -c '%s %n' 2>/dev/null \
    | awk -v cap="$cap" '{ sum += $1; if (sum > cap) exit; sub(/^[0-9]+ /, ""); print }')
}
# copy_sample SRC LIST DST: copy the listed files keeping their relative paths
copy_sample() { (cd "$1" && xargs -d '\n' cp -a --parents -t "$3" < "$2"); }
# sum_sample DIR LIST: one checksum over the listed files' contents, in list order
sum_sample() { (cd "$1" && xargs -d '\n' cat < "$2" | sha256sum | cut -d' ' -f1); }
sample /usr/share/doc $((32 << 20)) > /tmp/doc.list
sample /usr/lib/python3.11 $((12 << 20)) -name '*.py' > /tmp/py.list
sample /usr/share/doc $((16 << 20)) > /tmp/doc-small.list
result sample_files "$(cat /tmp/doc.list /tmp/py.list | wc -l)"

ERRS=0
# The runner is stopped after each LUN is removed, so qemu-img never looks at
# an image the daemon is still closing; its error lines are counted each time.
stop_runner() {
  runner_stop
  ERRS=$((ERRS + $(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null || true)))
  dump_log runner "$RUNNER_LOG" 30
}

# serve TAG IMG SIZE CODEC: start the runner and a LUN for IMG; sets SD=/dev/sdX
serve() {
  local tag="$1" out rc
  SD=
  timed runner_start_$tag runner_start || { result runner_$tag fail; return 1; }
  out=$(timed lun_create_$tag timeout 120 $TS lun create "$tag" --backstore qcow2 --path "$2" --size "$3" --compress "$4" 2>&1); rc=$?
  printf '%s\n' "$out" | sed "s/^/@@LOG lun_create_$tag /"
  [ $rc = 0 ] || return 1
  result dev_config_$tag "$(cat $CFG/core/user_*/$tag/attrib/dev_config 2>/dev/null)"
  SD=$(loop_export "$tag" 0)
}

# wait_compacted TAG: until the daemon's automatic compaction of LUN TAG has
# nothing pending (handlers/qcow2/auto-compact.ts: once the LUN is quiet, it
# compacts when enough compressed payloads died, and compresses clusters that
# partial writes staged uncompressed), as an admin sees it in
# `status --space`; prints "runs=N moved=M" (or why it gave up)
wait_compacted() {
  local tag="$1" end=$(( $(date +%s) + 300 )) s
  while :; do
    s=$($TS status --space --json 2>/dev/null | node -e '
let j = ""; process.stdin.on("data", (d) => (j += d)).on("end", () => {
  const l = JSON.parse(j).luns.find((l) => l.id.endsWith("/" + process.argv[1]));
  const a = l && l.space && l.space.autoCompaction;
  if (!a) return console.log("none");
  const state = !a.running && a.freedBytes < a.triggerBytes && a.stagedClusters === 0 ? "done" : "pending";
  console.log(`${state} runs=${a.runs} moved=${a.last ? a.last.movedClusters : 0} recompressed=${a.last ? a.last.recompressedClusters : 0} staged=${a.stagedClusters} freed=${a.freedBytes} trigger=${a.triggerBytes}`);
});' "$tag" 2>&1 | tail -1)
    case "$s" in done*) echo "${s#done }"; return 0 ;; esac
    [ "$(date +%s)" -ge $end ] && { echo "gave up: $s"; return 1; }
    sleep 2
  done
}

# unserve TAG: remove every LUN, stop the runner
unserve() {
  mountpoint -q $MNT && umount $MNT
  timed teardown_$1 teardown_all && result teardown_$1 ok || result teardown_$1 fail
  stop_runner
}

# measure TAG IMG RAW CODEC: qemu-img check/compare and sizes vs convert -c
measure() {
  local tag="$1" img="$2" raw="$3" codec="$4" out rc
  out=$(timed qemu_check_$tag qemu-img check "$img" 2>&1); rc=$?
  printf '%s\n' "$out" | sed "s/^/@@LOG qemu_check_$tag /"
  result qemu_check_$tag $rc
  out=$(timed qemu_compare_$tag qemu-img compare -f qcow2 -F raw "$img" "$raw" 2>&1); rc=$?
  printf '%s\n' "$out" | sed "s/^/@@LOG qemu_compare_$tag /"
  result qemu_compare_$tag $rc
  rm -f $S/ref.qcow2
  timed convert_$tag qemu-img convert -c -f raw -O qcow2 -o compression_type=$codec "$raw" $S/ref.qcow2
  result size_ours_$tag "$(blocks "$img")"
  result size_ref_$tag "$(blocks $S/ref.qcow2)"
  out=$(timed info_$tag $TS image info "$img" 2>&1); printf '%s\n' "$out" | sed "s/^/@@LOG info_$tag /"
  rm -f $S/ref.qcow2
}

# -- zstd ----------------------------------------------------------------------------------
Z=$S/z.qcow2
check create_zstd $TS image create $Z --size 512M --compress zstd
result img_ctype_zstd "$(qemu-img info $Z | sed -n 's/.*compression type: *//p')"
if serve z0 $Z 512M zstd; then
  sd=$SD
  result export_zstd ok
  mkdir -p $MNT
  check mkfs_zstd mkfs.ext4 -q -F "$sd" 400M
  check mount_zstd mount "$sd" $MNT
  mkdir -p $MNT/doc $MNT/py
  check copy_zstd bash -c "$(declare -f copy_sample); copy_sample /usr/share/doc /tmp/doc.list $MNT/doc && copy_sample /usr/lib/python3.11 /tmp/py.list $MNT/py"
  result tree_files_zstd "$(find $MNT -type f | wc -l)"
  result tree_sum_src "$(sum_sample /usr/share/doc /tmp/doc.list)"
  check umount_zstd umount $MNT
  echo 3 > /proc/sys/vm/drop_caches
  mount "$sd" $MNT && result tree_sum_lun "$(sum_sample $MNT/doc /tmp/doc.list)" && umount $MNT
  check fio_zstd fio --name=verify --filename="$sd" --rw=randwrite --bsrange=4k-1M --ioengine=libaio --direct=1 \
    --iodepth=16 --offset=420M --size=64M --buffer_compress_percentage=60 --refill_buffers \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=terse --terse-version=3
  check readback_zstd dd if="$sd" of=$S/z.raw bs=1M iflag=direct conv=sparse status=none
  result auto_compact_zstd1 "$(wait_compacted z0)"
  unserve z0
  measure zstd1 $Z $S/z.raw zstd
  rm -f $S/z.raw
  # -- acceptance 2: overwrite half the files, compact, measure again --------------------------
  if serve z1 $Z 512M zstd; then
    sd=$SD
    mount "$sd" $MNT && {
      # every second file gets new contents (its bytes reversed; new blocks, old ones freed)
      check overwrite_half python3 -c '
import os, sys
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs)
for p in files[1::2]:
    if os.path.islink(p): continue
    data = open(p, "rb").read()[::-1]
    open(p + ".new", "wb").write(data); os.replace(p + ".new", p)
' $MNT
      umount $MNT
    }
    sync
    result size_before_compact "$(blocks $Z)"
    # The served image's space figures, as `tcmu-ts status --space` reports them.
    $TS status --space --json > $S/status-space.json 2>&1
    result status_space "$(node -e 'const l=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).luns.find(l=>l.id.endsWith("/z1"));const s=l&&l.space;console.log(s?[s.logicalSize,s.compressedClusters>0,s.compressionRatio>1].join(" "):"none")' $S/status-space.json 2>&1 | tail -1)"
    # Online compaction of the served LUN, with fio jobs writing and verifying
    # (crc32c) after the filesystem back to back until it has finished.
    rm -f $S/compact.done
    ( n=0 bad=0
      while [ ! -f $S/compact.done ]; do
        n=$((n+1))
        fio --name=during$n --filename="$sd" --rw=randwrite --bsrange=4k-256k --ioengine=libaio --direct=1 \
          --iodepth=16 --offset=420M --size=16M --buffer_compress_percentage=60 --refill_buffers \
          --verify=crc32c --do_verify=1 --verify_fatal=1 --output=$S/during$n.out >/dev/null 2>&1 || bad=$((bad+1))
        grep -q 'err= 0' $S/during$n.out || bad=$((bad+1))
      done
      echo "$n $bad" > $S/during.summary ) &
    FIO=$!
    out=$(timed compact $TS image compact z1 --timeout 0 2>&1); rc=$?
    printf '%s\n' "$out" | sed 's/^/@@LOG compact /'
    result compact $rc
    result fio_still_running_at_compact_end "$(kill -0 $FIO 2>/dev/null && echo yes || echo no)"
    touch $S/compact.done
    wait $FIO
    read fio_jobs fio_bad < $S/during.summary
    result fio_jobs_during_compact "$fio_jobs"
    result fio_failed_during_compact "$fio_bad"
    check readback_zstd2 dd if="$sd" of=$S/z.raw bs=1M iflag=direct conv=sparse status=none
    unserve z1
    measure zstd2 $Z $S/z.raw zstd
    rm -f $S/z.raw
  else result export_zstd2 fail; unserve z1; fi
else result export_zstd fail; unserve z0; fi

# -- zlib ----------------------------------------------------------------------------------
L=$S/l.qcow2
check create_zlib $TS image create $L --size 256M --compress zlib
if serve l0 $L 256M zlib; then
  sd=$SD
  result export_zlib ok
  check mkfs_zlib mkfs.ext4 -q -F "$sd"
  check mount_zlib mount "$sd" $MNT
  check copy_zlib bash -c "$(declare -f copy_sample); copy_sample /usr/share/doc /tmp/doc-small.list $MNT"
  check umount_zlib umount $MNT
  check readback_zlib dd if="$sd" of=$S/l.raw bs=1M iflag=direct conv=sparse status=none
  result auto_compact_zlib "$(wait_compacted l0)"
  unserve l0
  measure zlib $L $S/l.raw zlib
  rm -f $S/l.raw
else result export_zlib fail; unserve l0; fi

# -- a qemu-img convert -c image served with compress=zstd: read and written ------------------
head -c $((32 * 1048576)) /dev/zero | tr '\0' 'q' > $S/c.raw
head -c $((4 * 1048576)) /dev/urandom >> $S/c.raw
truncate -s 64M $S/c.raw
qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd $S/c.raw $S/c.qcow2
if serve c0 $S/c.qcow2 64M zstd; then
  sd=$SD
  result conv_read "$(dd if="$sd" bs=1M iflag=direct status=none | cmp - $S/c.raw >/dev/null && echo same || echo differ)"
  head -c $((8 * 1048576)) /dev/urandom > $S/c.part
  dd if=$S/c.part of="$sd" bs=1M seek=20 oflag=direct conv=fsync status=none
  dd if=$S/c.part of=$S/c.raw bs=1M seek=20 conv=notrunc status=none
  unserve c0
  out=$(qemu-img check $S/c.qcow2 2>&1); result conv_check $?
  out=$(qemu-img compare -f qcow2 -F raw $S/c.qcow2 $S/c.raw 2>&1); result conv_compare $?
else result conv_export fail; unserve c0; fi

mountpoint -q $MNT && umount $MNT
teardown_all; stop_runner
result runner_log_errors $ERRS
exit 0
