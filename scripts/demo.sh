#!/usr/bin/env bash
# `npm run demo`: boot the test-bed VM, serve a file LUN (and a qcow2 LUN if
# built) with tcmu-ts on tcm_loop, and run a short workload. Needs root and
# `npm run build` (npm run demo does the build).
set -euo pipefail
# The body is one compound command, parsed whole before it runs, so editing
# this file while a run is in progress cannot derail that run.
{
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -f "$ROOT/.cache/vm/initramfs.cpio.gz" ] || bash "$ROOT/scripts/setup.sh"
[ -f "$ROOT/dist/src/cli/main.js" ] || { echo "demo: run npm run build first" >&2; exit 1; }
script="$(mktemp)"; out="$(mktemp)"
trap 'rm -f "$script"' EXIT
{ echo ". \"\$TCMU_TS_ROOT/test/kernel/guest-lib.sh\""; cat "$ROOT/scripts/vm/demo-guest.sh"; } > "$script"
echo "demo: booting the VM (QEMU, software emulation: expect ~1 min)"
set +e
bash "$ROOT/scripts/vm-run.sh" "$script" --timeout 900 2>"$out.err" | tee "$out" | grep --line-buffered -E '^demo:'
rc=${PIPESTATUS[0]}
set -e
summary=$(grep '^@@VM status=' "$out" | tail -1)
echo "demo: VM ${summary#@@VM }"
if [ "$rc" != 0 ]; then
  echo "demo: FAILED (exit $rc)"; grep '^@@LOG runner' "$out" | sed 's/^@@LOG runner /  runner: /' | tail -20
  cat "$out.err" >&2
fi
rm -f "$out" "$out.err"
exit "$rc"
exit
}
