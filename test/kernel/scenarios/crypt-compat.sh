# Guest scenario: LUKS data compatibility between dm-crypt (cryptsetup open on
# a loop device, the real kernel) and tcmu-ts's crypt layer, both ways, for
# LUKS2 argon2id 512-byte sectors, LUKS2 pbkdf2 4096-byte sectors and LUKS1.
#   cs_*   cryptsetup luksFormat, data written through dm-crypt, read by tcmu-ts
#   ts_*   tcmu-ts createEncryptedImage, data written by tcmu-ts, read through dm-crypt
# The crypt layer runs over the file handler here (no LUN): the served
# stack `crypt/;key=..>file//..` needs the stack syntax in dev_config.
set -u
S=/mnt/scratch
IO="node $TCMU_TS_ROOT/test/kernel/scenarios/crypt-io.mjs"
export DM_DISABLE_UDEV=1
KD=$S/keys
mkdir -p $KD && chmod 0700 $KD
head -c 45 /dev/urandom > $KD/k1 && printf '\n' >> $KD/k1 && chmod 0600 $KD/k1
LEN=$((4 << 20))
head -c $LEN /dev/urandom > $S/data.bin
result data_sum "$(sha256sum < $S/data.bin | cut -c1-64)"

# The kernel's own module requests do not find the VM's modules: load them by name.
for m in dm_mod dm_crypt loop xts aesni_intel aes_generic; do modprobe -d "$TCMU_VM_KDIR" $m 2>/dev/null; done
result modules "$(lsmod 2>/dev/null | awk '{print $1}' | grep -E '^(dm_crypt|xts|aesni_intel|aes_generic)$' | sort | tr '\n' ' ')"

dm_write() { # IMG: write data.bin through dm-crypt
  local loop; loop=$(losetup -f --show "$1") || return 1
  cryptsetup open --key-file $KD/k1 "$loop" cr || { losetup -d "$loop"; return 1; }
  dd if=$S/data.bin of=/dev/mapper/cr bs=1M oflag=direct status=none; local rc=$?
  sync; cryptsetup close cr; losetup -d "$loop"; return $rc; }
dm_sum() { # IMG: sha256 of the first LEN plaintext bytes through dm-crypt
  local loop; loop=$(losetup -f --show "$1") || return 1
  cryptsetup open --key-file $KD/k1 "$loop" cr || { losetup -d "$loop"; return 1; }
  head -c $LEN /dev/mapper/cr | sha256sum | cut -c1-64
  cryptsetup close cr; losetup -d "$loop"; }

for spec in "luks2-argon2id-512:--type luks2 --pbkdf argon2id --pbkdf-memory 32768 --iter-time 100 --sector-size 512:512" \
            "luks2-pbkdf2-4096:--type luks2 --pbkdf pbkdf2 --iter-time 100 --sector-size 4096:4096" \
            "luks1:--type luks1 --iter-time 100:512"; do
  name=${spec%%:*}; rest=${spec#*:}; flags=${rest%:*}; bs=${rest##*:}
  img=$S/cs-$name.img
  truncate -s 24M $img
  # shellcheck disable=SC2086
  if cryptsetup luksFormat -q $flags --key-file $KD/k1 $img && dm_write $img; then
    result cs_${name}_sum "$($IO read $img $KD k1 $bs $LEN 2>$S/io.err | sha256sum | cut -c1-64)"
    dump_log cs_${name} $S/io.err 10
  else
    result cs_${name}_sum dm-write-failed
  fi
done

for spec in "luks2-argon2id-512:luks2:512:argon2id" "luks2-pbkdf2-4096:luks2:4096:pbkdf2" "luks1:luks1:512:pbkdf2"; do
  IFS=: read -r name format sector kdf <<< "$spec"
  img=$S/ts-$name.img
  if $IO create $img $KD/k1 $format $sector $kdf $((8 << 20)) 2>$S/io.err && $IO write $img $KD k1 $sector $S/data.bin 2>>$S/io.err; then
    result ts_${name}_dump "$(cryptsetup luksDump $img >/dev/null 2>&1 && echo ok || echo fail)"
    result ts_${name}_sum "$(dm_sum $img 2>$S/dm.err)"
    dump_log ts_${name}_dm $S/dm.err 10
  else
    result ts_${name}_sum tcmu-ts-write-failed
    dump_log ts_${name} $S/io.err 20
  fi
done
exit 0
