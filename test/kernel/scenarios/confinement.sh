# Path confinement against the real kernel: a daemon with allowed_dirs serves
# a good file LUN under a verifying fio loop while crafted LUNs try to make it
# open files outside the allowed directory: a qcow2 image (inside) whose
# backing file is /etc/passwd, one whose relative backing name climbs out
# with ../, a file LUN whose path is a symlink leading out, a path whose
# "?" once split the checked path from the opened one, and a RECONFIG of the
# good LUN's dev_config to a file outside. Each must be refused with a log
# line naming the path; the good LUN keeps serving its old file throughout.
# strace, attached to the daemon, records every open: none may yield a file
# outside. Sourced after guest-lib.sh; asserted in confinement.test.ts.
set -u
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
S=/mnt/scratch
A=$S/allowed
O=$S/outside
TRACE=$S/open.trace
MiB=1048576
DEV_SIZE=$((64 * MiB))
mkdir -p $A $O
truncate -s $DEV_SIZE $A/good.img
truncate -s $DEV_SIZE $O/secret.img
truncate -s $DEV_SIZE $O/other.img
head -c $MiB /dev/zero | tr '\0' 'S' > $O/base.raw
OUT_SUM_BEFORE=$(cat $O/secret.img $O/other.img $O/base.raw | sha256sum | cut -d' ' -f1)
cat > $S/tcmu-ts.toml <<TOML
[daemon]
allowed_dirs = ["$A"]
TOML

STRACE_PID=
finish() {
  teardown_all && result teardown ok || result teardown fail
  runner_stop
  [ -n "$STRACE_PID" ] && wait "$STRACE_PID" 2>/dev/null
  result runner_log_errors "$(grep -c '"level":[56]0' "$RUNNER_LOG" 2>/dev/null)"
  dump_log runner "$RUNNER_LOG" 40
}
# refused_line KEY NEEDLE...: KEY=ok if one runner log line at error level has every NEEDLE
refused_line() { local k="$1" l; shift; l=$(grep '"level":50' "$RUNNER_LOG" 2>/dev/null)
  for n in "$@"; do l=$(grep -F -- "$n" <<<"$l"); done
  if [ -n "$l" ]; then result "$k" ok; printf '%s\n' "$l" | head -1 | cut -c1-600 | sed "s/^/@@LOG $k /"; else result "$k" fail; fi; }
# bad_lun KEY NAME DEV_CONFIG: the kernel's enable must fail (the daemon refused the device)
bad_lun() { local k="$1" name="$2" cfg="$3"
  if timeout 60 bash -c ". $TCMU_TS_ROOT/test/kernel/guest-lib.sh; tcmu_create '$name' '$cfg' $DEV_SIZE" >/dev/null 2>&1
  then result "$k" accepted; else result "$k" refused; fi
  rmdir "$CFG/core/user_1/$name" 2>/dev/null; }

# -- the daemon, traced --------------------------------------------------------------
if runner_start --config $S/tcmu-ts.toml; then result runner ok; else result runner fail; finish; exit 1; fi
if command -v strace >/dev/null; then
  # -f with -p attaches every thread (and the thread pool's later ones);
  # -y prints the path behind each fd an open returns.
  strace -f -y -qq -p "$RUNNER_PID" -e trace=open,openat,openat2 -o $TRACE 2>$S/strace.err &
  STRACE_PID=$!
  sleep 2   # let it attach before the first LUN arrives
  result strace attached
else
  result strace missing
fi

# -- the good LUN, under a verifying fio loop ------------------------------------------
if sd=$(tcmu_create good "file/$A/good.img" $DEV_SIZE) && sd=$(loop_export good 0); then result good_lun "$sd"; else result good_lun fail; finish; exit 1; fi
head -c $MiB /dev/urandom > $S/marker
MARK=$(sha256sum < $S/marker | cut -d' ' -f1)
result marker "$MARK"
dd if=$S/marker of="$sd" bs=1M seek=0 oflag=direct conv=fsync status=none && result marker_write ok || result marker_write fail
rm -f $S/stop-fio $S/fio.count
( ok=0; bad=0
  while [ ! -e $S/stop-fio ] || [ $((ok + bad)) = 0 ]; do
    if fio --name=bg --filename="$sd" --rw=randwrite --bsrange=4k-64k --ioengine=libaio --direct=1 --iodepth=8 \
         --offset=16M --size=8M --verify=crc32c --do_verify=1 --verify_fatal=1 >>$S/fio.out 2>&1
    then ok=$((ok + 1)); else bad=$((bad + 1)); fi
  done
  echo "$ok $bad" > $S/fio.count ) &
FIO_PID=$!

# -- crafted LUNs: each refused, with a clear log line -------------------------------------
qemu-img create -q -f qcow2 -u -b /etc/passwd -F raw $A/passwd.qcow2 64M
bad_lun qcow2_passwd evil1 "qcow2/$A/passwd.qcow2"
refused_line qcow2_passwd_log 'cannot serve LUN' 'passwd.qcow2' '/etc/passwd: refused' "$A"

qemu-img create -q -f qcow2 -u -b ../outside/base.raw -F raw $A/climb.qcow2 64M
bad_lun qcow2_climb evil2 "qcow2/$A/climb.qcow2"
refused_line qcow2_climb_log 'cannot serve LUN' 'climb.qcow2' '../outside/base.raw: refused'

ln -sf $O/secret.img $A/link.img
bad_lun file_symlink evil3 "file/$A/link.img"
refused_line file_symlink_log 'cannot serve LUN' 'link.img: refused' 'resolves outside'

mkdir -p "$A/q?"
bad_lun file_question evil4 "file/$A/q?/../../outside/secret.img"
refused_line file_question_log 'cannot serve LUN' 'q?/../../outside/secret.img: refused'

# -- RECONFIG of the good LUN to a file outside: refused, old file kept --------------------------
GOOD_CFG=$(cat $CFG/core/user_1/good/attrib/dev_config 2>/dev/null)
result good_dev_config "$GOOD_CFG"
timeout 60 sh -c "echo -n 'file/$O/other.img' > $CFG/core/user_1/good/attrib/dev_config" 2>/dev/null \
  && result reconfig_outside accepted || result reconfig_outside refused
refused_line reconfig_outside_log 'reconfig refused' "$O/other.img: refused"
ln -sf $O/other.img $A/other-link.img
timeout 60 sh -c "echo -n 'file/$A/other-link.img' > $CFG/core/user_1/good/attrib/dev_config" 2>/dev/null \
  && result reconfig_symlink accepted || result reconfig_symlink refused
result dev_config_after "$(cat $CFG/core/user_1/good/attrib/dev_config 2>/dev/null)"
sleep 5   # let the fio loop run on after the refusals
result marker_after "$(dd if="$sd" bs=1M count=1 iflag=direct status=none | sha256sum | cut -d' ' -f1)"

# -- fio stops; a RECONFIG inside is still accepted (the refusals were about the paths) ------------
touch $S/stop-fio
wait $FIO_PID
read -r FIO_OK FIO_BAD < $S/fio.count
result fio_ok "$FIO_OK"; result fio_bad "$FIO_BAD"
[ "$FIO_BAD" = 0 ] || tail -n 30 $S/fio.out | sed 's/^/@@LOG fio /'
blockdev --flushbufs "$sd"
cp --sparse=always $A/good.img $A/good2.img
timeout 60 sh -c "echo -n 'file/$A/good2.img' > $CFG/core/user_1/good/attrib/dev_config" 2>/dev/null \
  && result reconfig_inside accepted || result reconfig_inside refused
sg_turs "$sd" >/dev/null 2>&1; sg_turs "$sd" >/dev/null 2>&1
result marker_reconfigured "$(dd if="$sd" bs=1M count=1 iflag=direct status=none | sha256sum | cut -d' ' -f1)"

# -- what the daemon opened ------------------------------------------------------------------------
result fd_outside "$(ls -l /proc/$RUNNER_PID/fd 2>/dev/null | grep -cE "$O|/etc/passwd")"
ls -l /proc/$RUNNER_PID/fd 2>/dev/null | grep -E "$S|/etc" | sed 's/^/@@LOG daemon_fds /'
finish
result out_sum_before "$OUT_SUM_BEFORE"
result out_sum_after "$(cat $O/secret.img $O/other.img $O/base.raw | sha256sum | cut -d' ' -f1)"
if [ -n "$STRACE_PID" ]; then
  # a successful open prints "= N</path>": none may name a path outside
  result trace_lines "$(wc -l < $TRACE)"
  result trace_outside "$(grep -cE "= [0-9]+<($O|/etc/passwd)" $TRACE)"
  grep -E "= [0-9]+<($O|/etc/passwd)" $TRACE | head -5 | sed 's/^/@@LOG trace_outside /'
  result trace_good2 "$(grep -cE "= [0-9]+<$A/good2.img>" $TRACE)"
  result trace_refused "$(grep -cE 'openat2\(.*= -1 (EXDEV|ELOOP)' $TRACE)"
  grep -E 'openat2\(' $TRACE | grep -vE "= [0-9]+<$A/good" | head -12 | cut -c1-300 | sed 's/^/@@LOG trace /'
  head -c 2000 $S/strace.err | sed 's/^/@@LOG strace_err /'
fi
exit 0
