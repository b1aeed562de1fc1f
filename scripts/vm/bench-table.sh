#!/usr/bin/env bash
# Turn @@BENCH lines (stdin) into two tables: mean IOPS and MB/s per job and
# LUN, then every other LUN's ratio to the first (the reference): the ratio
# of the means, the geometric mean of the per-round ratios with its 95%
# confidence interval (Student t over the rounds' log ratios; a round's runs
# are adjacent in time, so pairing them cancels most of the machine's drift),
# the median and the lowest and highest per-round ratio. Lines that carry
# cpu=<guest CPU microseconds per I/O> add a third table: the mean CPU per
# I/O and every other LUN's ratio to the reference's, computed the same way.
# Lines that carry dcpu= (the runner daemon's own CPU per I/O, all its
# threads) add a fourth: those means, and each daemon's ratio to
# tcmu-runner's (or to the first daemon's without one).
# Usage: bench-table.sh REFERENCE_LABEL LABEL... < console
# Labels with no results are left out.
awk -v labels="$*" '
  # two-sided 95% Student t quantile for df degrees of freedom
  function t95(df) {
    split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086", t, " ")
    return df < 1 ? 0 : df <= 20 ? t[df] : df <= 30 ? 2.05 : 2.0
  }
  /^@@BENCH-INFO / { sub(/^@@BENCH-INFO /, ""); info = $0 }
  /^@@BENCH / {
    delete f
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    k = f["job"] SUBSEP f["lun"]; iops[k] += f["iops"]; mbps[k] += f["mbps"]; n[k]++; has[f["lun"]] = 1
    round_iops[f["job"], f["lun"], f["round"]] = f["iops"]; if (f["round"] > rounds) rounds = f["round"]
    if (f["cpu"] + 0 > 0) { cpu[k] += f["cpu"]; ncpu[k]++; round_cpu[f["job"], f["lun"], f["round"]] = f["cpu"]; anycpu = 1 }
    if (f["dcpu"] + 0 > 0) {
      dcpu[k] += f["dcpu"]; ndcpu[k]++; round_dcpu[f["job"], f["lun"], f["round"]] = f["dcpu"]; hasd[f["lun"]] = 1
    }
    if (!(f["job"] in seen)) { seen[f["job"]] = 1; order[++nj] = f["job"]; if (length(f["job"]) > jw) jw = length(f["job"]) }
  }
  END {
    nl = 0; split(labels, given, " ")
    for (i = 1; i in given; i++) if (given[i] in has) lab[++nl] = given[i]
    if (nl < 2) { print "bench-table: need results for the reference and at least one other LUN" > "/dev/stderr"; exit 1 }
    ref = lab[1]; others = lab[2]
    for (l = 3; l <= nl; l++) others = others ", " lab[l]
    printf "# %s vs %s: same boot, interleaved by round (TCG emulation: read the ratios)\n# %s\n", others, ref, info
    if (jw < 12) jw = 12
    lw = 12; for (l = 1; l <= nl; l++) if (length(lab[l]) > lw) lw = length(lab[l])
    printf "%-*s", jw, "job"; for (l = 1; l <= nl; l++) printf " %*s", w(lab[l] " IOPS"), lab[l] " IOPS"
    for (l = 1; l <= nl; l++) printf " %*s", w(lab[l] " MB/s"), lab[l] " MB/s"; printf "\n"
    for (j = 1; j <= nj; j++) {
      printf "%-*s", jw, order[j]
      for (l = 1; l <= nl; l++) { k = order[j] SUBSEP lab[l]; printf " %*.0f", w(lab[l] " IOPS"), n[k] ? iops[k] / n[k] : 0 }
      for (l = 1; l <= nl; l++) { k = order[j] SUBSEP lab[l]; printf " %*.1f", w(lab[l] " MB/s"), n[k] ? mbps[k] / n[k] : 0 }
      printf "\n"
    }
    printf "\n# ratio to %s per job (means = ratio of the mean IOPS; geo mean and its 95%% CI over the per-round ratios)\n", ref
    printf "%-*s %-*s %6s %8s %11s %7s %11s %7s\n", jw, "job", lw, "lun", "means", "geo mean", "95% CI", "median", "per round", "rounds"
    for (j = 1; j <= nj; j++) for (l = 2; l <= nl; l++) row(order[j], lab[l], iops, n, round_iops)
    if (!anycpu) exit
    printf "\n# guest CPU per I/O, microseconds (runner + kernel + fio, from /proc/stat inside each run)\n"
    printf "%-*s", jw, "job"; for (l = 1; l <= nl; l++) printf " %*s", w(lab[l] " us/IO"), lab[l] " us/IO"; printf "\n"
    for (j = 1; j <= nj; j++) {
      printf "%-*s", jw, order[j]
      for (l = 1; l <= nl; l++) { k = order[j] SUBSEP lab[l]; printf " %*.0f", w(lab[l] " us/IO"), ncpu[k] ? cpu[k] / ncpu[k] : 0 }
      printf "\n"
    }
    printf "\n# CPU per I/O, ratio to %s (lower is cheaper; same columns as above)\n", ref
    printf "%-*s %-*s %6s %8s %11s %7s %11s %7s\n", jw, "job", lw, "lun", "means", "geo mean", "95% CI", "median", "per round", "rounds"
    for (j = 1; j <= nj; j++) for (l = 2; l <= nl; l++) row(order[j], lab[l], cpu, ncpu, round_cpu)
    daemons()
  }
  # Each runner daemon: its own CPU per I/O (only the LUNs served by a daemon).
  function daemons(   l, nd, dl, j, k, d) {
    nd = 0
    for (l = 1; l <= nl; l++) if (lab[l] in hasd) dl[++nd] = lab[l]
    if (nd == 0) return
    printf "\n# runner daemon CPU per I/O, microseconds (all its threads, from /proc/PID/stat inside each run)\n"
    printf "%-*s", jw, "job"; for (d = 1; d <= nd; d++) printf " %*s", w(dl[d] " us/IO"), dl[d] " us/IO"; printf "\n"
    for (j = 1; j <= nj; j++) {
      printf "%-*s", jw, order[j]
      for (d = 1; d <= nd; d++) { k = order[j] SUBSEP dl[d]; printf " %*s", w(dl[d] " us/IO"), ndcpu[k] ? sprintf("%.0f", dcpu[k] / ndcpu[k]) : "-" }
      printf "\n"
    }
    if (nd < 2) return
    ref = dl[1]; for (d = 1; d <= nd; d++) if (dl[d] == "tcmu-runner") ref = dl[d]
    printf "\n# runner daemon CPU per I/O, ratio to %s\n", ref
    printf "%-*s %-*s %6s %8s %11s %7s %11s %7s\n", jw, "job", lw, "lun", "means", "geo mean", "95% CI", "median", "per round", "rounds"
    for (j = 1; j <= nj; j++) for (d = 1; d <= nd; d++) if (dl[d] != ref) row(order[j], dl[d], dcpu, ndcpu, round_dcpu)
  }
  function w(s) { return length(s) < 10 ? 10 : length(s) }
  # row JOB LUN TOTAL COUNT PER_ROUND: one ratio line of LUN to the reference
  # for the metric whose sums, counts and per-round values are given.
  function row(job, lun, total, count, per_round,   ka, kb, ia, ib, nq, rd, ra, rb, q, x, qs, sum, sq, m, sd, h, median) {
    ka = job SUBSEP ref; kb = job SUBSEP lun
    ia = count[ka] ? total[ka] / count[ka] : 0; ib = count[kb] ? total[kb] / count[kb] : 0
    nq = 0; sum = 0; sq = 0
    for (rd = 1; rd <= rounds; rd++) {
      ra = per_round[job, ref, rd]; rb = per_round[job, lun, rd]
      if (ra == "" || rb == "" || ra + 0 <= 0 || rb + 0 <= 0) continue
      q = rb / ra; sum += log(q); sq += log(q) * log(q)
      for (x = ++nq; x > 1 && qs[x - 1] > q; x--) qs[x] = qs[x - 1]  # insertion sort
      qs[x] = q
    }
    if (nq == 0) { printf "%-*s %-*s %6s %8s %11s %7s %11s %7d\n", jw, job, lw, lun, "n/a", "n/a", "n/a", "n/a", "n/a", 0; return }
    m = sum / nq
    sd = nq > 1 && sq - nq * m * m > 0 ? sqrt((sq - nq * m * m) / (nq - 1)) : 0
    h = t95(nq - 1) * sd / sqrt(nq)
    median = nq % 2 ? qs[(nq + 1) / 2] : (qs[nq / 2] + qs[nq / 2 + 1]) / 2
    printf "%-*s %-*s %6s %8.2f %11s %7.2f %11s %7d\n", jw, job, lw, lun, (ia > 0 ? sprintf("%.2f", ib / ia) : "n/a"), exp(m),
      (nq > 1 ? sprintf("%.2f-%.2f", exp(m - h), exp(m + h)) : "n/a"), median, sprintf("%.2f-%.2f", qs[1], qs[nq]), nq
  }'
