#!/usr/bin/env bash
# Turn @@BENCH lines (stdin) into a table: mean IOPS and MB/s per job and LUN,
# the ratio of the means B/A, the median per-round ratio, and the lowest and
# highest per-round ratio (how much emulation noise there was).
# Usage: bench-table.sh LABEL_A LABEL_B < console
A="$1" B="$2"
awk -v A="$A" -v B="$B" '
  /^@@BENCH-INFO / { sub(/^@@BENCH-INFO /, ""); info = $0 }
  /^@@BENCH / {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    k = f["job"] SUBSEP f["lun"]; iops[k] += f["iops"]; mbps[k] += f["mbps"]; n[k]++
    r = f["job"] SUBSEP f["lun"] SUBSEP f["round"]; round_iops[r] = f["iops"]; if (f["round"] > rounds) rounds = f["round"]
    if (!(f["job"] in seen)) { seen[f["job"]] = 1; order[++nj] = f["job"] }
  }
  END {
    printf "# %s vs %s, same boot, interleaved (TCG emulation: read the ratios)\n# %s\n", B, A, info
    printf "%-12s %12s %12s %10s %10s %8s %8s %s\n", "job", A " IOPS", B " IOPS", A " MB/s", B " MB/s", B "/" A, "median", "  per round"
    for (j = 1; j <= nj; j++) {
      ka = order[j] SUBSEP A; kb = order[j] SUBSEP B
      ia = n[ka] ? iops[ka] / n[ka] : 0; ib = n[kb] ? iops[kb] / n[kb] : 0
      ma = n[ka] ? mbps[ka] / n[ka] : 0; mb = n[kb] ? mbps[kb] / n[kb] : 0
      nq = 0
      for (rd = 1; rd <= rounds; rd++) {
        ra = round_iops[order[j], A, rd]; rb = round_iops[order[j], B, rd]
        if (ra == "" || rb == "" || ra + 0 <= 0) continue
        q = rb / ra
        for (x = ++nq; x > 1 && qs[x - 1] > q; x--) qs[x] = qs[x - 1]  # insertion sort
        qs[x] = q
      }
      median = nq == 0 ? "n/a" : sprintf("%.2f", nq % 2 ? qs[(nq + 1) / 2] : (qs[nq / 2] + qs[nq / 2 + 1]) / 2)
      spread = nq == 0 ? "" : sprintf("  %.2f-%.2f", qs[1], qs[nq])
      printf "%-12s %12.0f %12.0f %10.1f %10.1f %8s %8s%s\n", order[j], ia, ib, ma, mb, (ia > 0 ? sprintf("%.2f", ib / ia) : "n/a"), median, spread
    }
  }'
