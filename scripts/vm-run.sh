#!/usr/bin/env bash
# Boot the test-bed VM and run one guest script in it.
#
#   scripts/vm-run.sh GUEST_SCRIPT [--timeout S] [--mem MiB] [--smp N]
#                     [--scratch-size SIZE] [--modules "m1 m2"] [--log FILE] [--keep]
#
# The guest sees the host's / read-only (9p) plus tmpfs on /tmp /run /root /mnt
# and a fresh ext4 scratch disk at /mnt/scratch (cwd of the script). The script
# runs with host bash after target modules are loaded; $TCMU_TS_ROOT is this
# checkout, so `. "$TCMU_TS_ROOT/test/kernel/guest-lib.sh"` works.
#
# stdout: the serial console (guest output + kernel messages), then one line
#   @@VM status=<ok|fail|timeout|panic|noexit|setup> exit=N boot_s=X total_s=Y log=FILE
# Guest lines of interest: `@@RESULT key=value`, `@@EXIT n`.
# On failure the console tail (last 60 lines) is repeated on stderr.
# Exit status: the guest script's when it ran to the end; 124 timeout,
# 125 kernel panic, 126 no @@EXIT line, 127 setup problem.
# TCMU_VM_CPU overrides the emulated CPU model (default max; scripts/bench uses max,-erms).
# TCMU_VM_APPEND: more kernel command-line parameters (e.g. clocksource=tsc).
set -uo pipefail
# The body is one compound command, parsed whole before it runs, so editing
# this file while a run is in progress cannot derail that run.
{
# Physical paths: the guest resolves them through 9p, where a host symlink
# with an absolute target would point outside the mounted root.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
CACHE="$(realpath -m "${TCMU_VM_CACHE:-$ROOT/.cache/vm}")"

# The header comment, however long it grows: lines 2.. up to the first non-comment.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" >&2; exit 127; }
[ $# -ge 1 ] || usage
SCRIPT="$1"; shift
TIMEOUT=600 MEM=2048 SMP=2 SCRATCH=4G LOG="" KEEP=0
MODULES="${TCMU_VM_MODULES:-configfs target_core_mod target_core_user tcm_loop sd_mod sg target_core_file target_core_iblock iscsi_target_mod}"
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --mem) MEM="$2"; shift 2 ;;
    --smp) SMP="$2"; shift 2 ;;
    --scratch-size) SCRATCH="$2"; shift 2 ;;
    --modules) MODULES="$2"; shift 2 ;;
    --log) LOG="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) usage ;;
  esac
done

setup_fail() { echo "@@VM status=setup exit=127 reason=\"$*\""; echo "vm-run: $*" >&2; exit 127; }
[ -r "$SCRIPT" ] || setup_fail "guest script not readable: $SCRIPT"
command -v qemu-system-x86_64 >/dev/null || setup_fail "qemu-system-x86_64 missing (run scripts/setup.sh)"
[ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initramfs.cpio.gz" ] && [ -f "$CACHE/kver" ] \
  || setup_fail "no kernel/initramfs in $CACHE (run scripts/setup.sh)"
KVER="$(cat "$CACHE/kver")"
# An edited init must not silently run stale: rebuild (a second or two).
if [ "$ROOT/scripts/vm/init" -nt "$CACHE/initramfs.cpio.gz" ] \
   || [ "$ROOT/scripts/vm/build-initramfs.sh" -nt "$CACHE/initramfs.cpio.gz" ] \
   || [ "$(cat "$CACHE/initramfs.for" 2>/dev/null)" != "$CACHE" ]; then
  bash "$ROOT/scripts/vm/build-initramfs.sh" "$CACHE" "$KVER" >&2 && echo "$CACHE" > "$CACHE/initramfs.for" \
    || setup_fail "initramfs rebuild failed"
fi
# Host paths the guest must see even if they lie under a guest tmpfs
# (/tmp /run /root /var/tmp /mnt): the checkout, the cache, $TCMU_VM_KEEP.
KEEP_PATHS="$ROOT,$CACHE${TCMU_VM_KEEP:+,$TCMU_VM_KEEP}"
case "$KEEP_PATHS" in *[[:space:]]*) setup_fail "paths with spaces are not supported: $KEEP_PATHS" ;; esac

mkdir -p "$CACHE/runs"
RUN="$(mktemp -d "$CACHE/runs/run.XXXXXX")"
[ -n "$LOG" ] || LOG="$RUN/console.log"
# The (sparse, up to --scratch-size) image goes unless --keep; the console log
# of a failed run stays in $RUN for a post-mortem, a passing run's dir goes.
cleanup() { [ "$KEEP" = 1 ] || rm -rf "$RUN/scratch.img" "$RUN/stage"; }
trap cleanup EXIT

# Stage the script and its environment onto the scratch disk itself
# (mkfs.ext4 -d), so the guest needs no writable host path.
mkdir -p "$RUN/stage/.vm"
cp "$SCRIPT" "$RUN/stage/.vm/script.sh"
{
  printf 'export TCMU_TS_ROOT=%q\n' "$ROOT"
  printf 'export TCMU_VM_KDIR=%q\n' "$CACHE/kernel"
  printf 'export TCMU_VM_KVER=%q\n' "$KVER"
  printf 'export TCMU_VM_MODULES=%q\n' "$MODULES"
  printf 'export SCRATCH=/mnt/scratch\n'
  [ -n "${CI:-}" ] && printf 'export CI=%q\n' "$CI"
} > "$RUN/stage/.vm/env"
truncate -s "$SCRATCH" "$RUN/scratch.img"
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 -d "$RUN/stage" "$RUN/scratch.img" \
  || setup_fail "mkfs.ext4 failed"

# Console lines are cleaned of CRs and SeaBIOS's terminal escapes so that
# guest lines start at column 0 (the host greps `^@@`).
T0=$(date +%s.%N)
# --foreground keeps timeout (and QEMU) in our process group, so killing the
# group (vm.ts does when vitest gives up) also ends QEMU.
# panic=-1: reboot at once on panic; -no-reboot turns that reboot into a QEMU
# exit. oops=panic: a kernel bug ends the run instead of hanging it.
timeout --foreground --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg -cpu "${TCMU_VM_CPU:-max}" -smp "$SMP" -m "$MEM" \
  -nographic -no-reboot \
  -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 oops=panic loglevel=4 quiet tcmuts.run=$ROOT/scripts/vm/guest-boot.sh tcmuts.keep=$KEEP_PATHS${TCMU_VM_APPEND:+ $TCMU_VM_APPEND}" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -drive "file=$RUN/scratch.img,if=virtio,format=raw,cache=unsafe" \
  -nic none </dev/null 2>&1 \
  | sed -u -e 's/\r//g' -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' | tee -p "$LOG"
QRC=${PIPESTATUS[0]}
T1=$(date +%s.%N)
TOTAL=$(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}')
BOOT=$(sed -n 's/^@@VM phase=ready uptime=\([0-9.]*\).*/\1/p' "$LOG" | head -1)

EXITLINE=$(grep -a '^@@EXIT ' "$LOG" | tail -1)
if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then STATUS=timeout RC=124
elif grep -aq 'Kernel panic - not syncing' "$LOG"; then STATUS=panic RC=125
elif [ -z "$EXITLINE" ]; then STATUS=noexit RC=126
else
  RC=${EXITLINE#@@EXIT }
  if [ "$RC" = 0 ]; then STATUS=ok; else STATUS=fail; fi
fi
if [ "$STATUS" != ok ]; then
  {
    echo "---- vm-run: status=$STATUS (qemu rc=$QRC, ${TOTAL}s, timeout ${TIMEOUT}s); console tail ----"
    tail -n 60 "$LOG"
    echo "---- end of console tail ----"
  } >&2
fi
[ "$KEEP" = 1 ] && echo "vm-run: kept $RUN" >&2
if [ "$STATUS" = ok ] && [ "$KEEP" = 0 ]; then
  rm -rf "$RUN"; [ "$LOG" = "$RUN/console.log" ] && LOG=-
fi
echo "@@VM status=$STATUS exit=$RC boot_s=${BOOT:-?} total_s=$TOTAL log=$LOG"
exit "$RC"
exit
}
