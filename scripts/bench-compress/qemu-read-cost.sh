#!/usr/bin/env bash
# QEMU's own cost of reading compressed qcow2 clusters, as an oracle for
# read-cost.mts: the same data (a tar of /usr/share/doc) as an uncompressed
# image and as `qemu-img convert -c` images (zstd, zlib), read in process by
# `qemu-img bench` (QEMU's qcow2 driver, page-cache reads, io_uring). Shapes:
#   4k-new-cluster: 4 KiB reads at qd16, each in a cluster the previous
#                   request did not touch (step = cluster + 4 KiB), the
#                   cost a random 4 KiB reader pays;
#   4k-seq:         4 KiB sequential reads at qd16;
#   1m-seq:         1 MiB sequential reads at qd8.
# Not a test: numbers for docs/COMPRESSION.md.
#
#   scripts/bench-compress/qemu-read-cost.sh [MiB] [4k requests]
set -euo pipefail
mib=${1:-32}
count=${2:-40000}
dir=$(mktemp -d /tmp/qemu-read-cost.XXXX)
trap 'rm -rf "$dir"' EXIT
{ tar -cf - -C /usr/share doc 2>/dev/null || true; } | head -c $((mib << 20)) > "$dir/data.raw" # tar ends on SIGPIPE
qemu-img convert -f raw -O qcow2 "$dir/data.raw" "$dir/uncompressed.qcow2"
qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd "$dir/data.raw" "$dir/zstd.qcow2"
qemu-img convert -c -f raw -O qcow2 "$dir/data.raw" "$dir/zlib.qcow2"

# bench IMAGE COUNT DEPTH SIZE STEP -> requests per second
bench() {
  local secs
  secs=$(qemu-img bench -f qcow2 -i io_uring -c "$2" -d "$3" -s "$4" -S "$5" "$1" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
  awk -v n="$2" -v s="$secs" 'BEGIN { printf "%.0f", n / s }'
}

echo "data: $mib MiB tar of /usr/share/doc, 64 KiB clusters; $(qemu-img --version | head -1)"
printf '%-14s %22s %16s %16s\n' image '4k-new-cluster IOPS' '4k-seq IOPS' '1m-seq MiB/s'
for img in uncompressed zstd zlib; do
  f="$dir/$img.qcow2"
  bench "$f" 200 8 1M 1M > /dev/null # warm the page cache
  printf '%-14s %22s %16s %16s\n' "$img" \
    "$(bench "$f" "$count" 16 4k $((65536 + 4096)))" \
    "$(bench "$f" "$count" 16 4k 4k)" \
    "$(bench "$f" $((count / 50)) 8 1M 1M)"
done
