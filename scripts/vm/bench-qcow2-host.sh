#!/usr/bin/env bash
# Host side of `scripts/bench qcow2`: tcmu-ts qcow2 vs Debian tcmu-runner's qcow
# handler in one VM boot (guest side: scripts/vm/bench-qcow2.sh).
# Table -> scripts/results/bench-qcow2.txt (ratio column = tcmu-ts/tcmu-runner).
# Needs tcmu-runner on the host (the guest sees the host's root); as root it
# is installed on demand.
# Env: BENCH_RUNTIME (s per fio run, 10), BENCH_ROUNDS (A B rounds, 2),
#      BENCH_SIZE (allocated region for the *-alloc jobs, 256M).
set -uo pipefail
{
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$ROOT/scripts/vm/need-tcmu-runner.sh"
need_tcmu_runner "bench qcow2" || exit 2
[ -f "$ROOT/dist/src/cli/main.js" ] || { echo "bench qcow2: not built (npm run build)" >&2; exit 1; }
[ -f "$ROOT/.cache/vm/vmlinuz" ] || bash "$ROOT/scripts/setup.sh"
out="$(mktemp)"; script="$(mktemp)"
{
  echo ". \"\$TCMU_TS_ROOT/test/kernel/guest-lib.sh\""
  for v in BENCH_RUNTIME BENCH_ROUNDS BENCH_SIZE; do
    [ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  cat "$ROOT/scripts/vm/bench-qcow2.sh"
} > "$script"
rc=0
bash "$ROOT/scripts/vm-run.sh" "$script" --timeout 2400 > "$out" || rc=$?
rm -f "$script"
if ! grep -q '^@@BENCH ' "$out"; then
  echo "bench qcow2: no results (vm-run rc=$rc), console in $out" >&2
  grep -a '^@@BENCH-ERROR\|^@@LOG' "$out" | tail -n 40 >&2
  exit 1
fi
mkdir -p "$ROOT/scripts/results"
{
  bash "$ROOT/scripts/vm/bench-table.sh" tcmu-runner tcmu-ts < "$out"
  grep -a '^@@BENCH-PHASE ' "$out" | sed 's/^@@BENCH-PHASE /# phase: /'
  echo "# coexistence probe (both runners up, netlink replies required):"
  grep -a '^@@COEXIST' "$out" | sed 's/^@@COEXIST[-A-Z]* */#   /'
  [ $rc = 0 ] || echo "# WARNING: guest run ended with rc=$rc (console kept in $out)"
} | tee "$ROOT/scripts/results/bench-qcow2.txt"
[ $rc = 0 ] && rm -f "$out"
exit $rc
}
