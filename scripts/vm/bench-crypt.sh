# Guest scenario for `scripts/bench crypt-vm`: the crypt layer against a plain
# file LUN and against dm-crypt, same boot, same tcm_loop target, fio jobs in
# a rotated order (bench-lib.sh):
#   file      tcmu-ts `file/PATH` (the reference: what encryption costs on top)
#   crypt     tcmu-ts `crypt/;key=k1>file/PATH`, a LUKS2 aes-xts-plain64
#             512-byte-sector container made by cryptsetup luksFormat
#   dm-crypt  dm-crypt (cryptsetup open, LUKS2 the same) over the in-kernel
#             fileio LUN: the kernel's own encryption as the reference
# All backed by sparse files on the scratch ext4, page cache (fd_buffered_io=1
# for fileio). Output: @@BENCH lines for bench-table.sh.
set -u
BENCH_RUNTIME=${BENCH_RUNTIME:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-4}
. "$TCMU_TS_ROOT/scripts/vm/bench-lib.sh"
SIZE=$((512 * 1048576))
S=/mnt/scratch/bench-crypt
KD=$S/keys
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
export DM_DISABLE_UDEV=1
fail() {
  echo "bench: $*" >&2
  cryptsetup close bref 2>/dev/null
  teardown_all; runner_stop
  dump_log runner "$RUNNER_LOG"
  exit 1
}
mkdir -p $S $KD && chmod 0700 $KD
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $KD/k1 && chmod 0600 $KD/k1
printf '[daemon]\nkey_dir = "%s"\ncontrol_socket = "%s/control.sock"\n' $KD $S > $S/tcmu-ts.toml
for m in dm_mod dm_crypt xts aesni_intel aes_generic; do modprobe -d "$TCMU_VM_KDIR" $m 2>/dev/null; done

truncate -s $SIZE $S/plain.img $S/ref.img
# The KDF at cryptsetup's minimum cost: it runs once per open and is not what is
# measured, but at 1,000,000 PBKDF2 iterations (tcmu-ts image create's default)
# a loaded host under emulation once took over the runner's 240 s to open it.
truncate -s $((SIZE + 16 * 1048576)) $S/enc.img
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 512 --key-file $KD/k1 $S/enc.img || fail "luksFormat"
tcmu_create plain file/$S/plain.img $SIZE nl_reply_supported=-1 >/dev/null || fail "file device"
tcmu_create enc "crypt/;key=k1>file/$S/enc.img" $SIZE nl_reply_supported=-1 >/dev/null || fail "crypt device"
fileio_create ref $S/ref.img $SIZE fd_buffered_io=1 || fail "fileio"
RUNNER_TIMEOUT=600 RUNNER_EXPECT="$(uio_of plain) $(uio_of enc)" runner_start --config $S/tcmu-ts.toml || fail "runner"
plain=$(loop_export plain 0) || fail "export file"
enc=$(loop_export enc 1) || fail "export crypt"
ref=$(loop_export ref 2) || fail "export fileio"
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --iter-time 100 --sector-size 512 --key-file $KD/k1 "$ref" || fail "luksFormat on the fileio LUN"
cryptsetup open --key-file $KD/k1 "$ref" bref || fail "cryptsetup open"
echo "@@BENCH-INFO kernel=$(uname -r) runtime=${BENCH_RUNTIME}s rounds=$BENCH_ROUNDS size=$BENCH_SIZE cpus=$(nproc) luks=luks2/aes-xts-plain64/512-bit/512B-sectors dm-crypt-over=fileio"
luns=(file "$plain" crypt "$enc" dm-crypt /dev/mapper/bref)
bench_prepare "${luns[@]}"
bench_compare "${luns[@]}"
cryptsetup close bref
teardown_all
runner_stop
