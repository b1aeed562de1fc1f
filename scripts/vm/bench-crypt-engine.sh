# Guest scenario for `scripts/bench crypt-engine-vm`: the crypt layer's
# aes-xts-plain64 throughput on one core against the kernel's own
# (`cryptsetup benchmark`, AF_ALG), in one boot. Under TCG both run emulated
# AES-NI instructions, so only the ratio means anything. Output: @@XTS lines
# from crypt-engine-rate.mjs and @@CRYPTSETUP lines.
set -u
for m in af_alg algif_skcipher xts aesni_intel aes_generic; do modprobe -d "$TCMU_VM_KDIR" $m 2>/dev/null; done
echo "@@BENCH-INFO kernel=$(uname -r) cpus=$(nproc) cpu_flags_aes=$(grep -c -w aes /proc/cpuinfo)"
node "$TCMU_TS_ROOT/scripts/vm/crypt-engine-rate.mjs"
for bits in 256 512; do
  cryptsetup benchmark -c aes-xts-plain64 -s $bits 2>&1 | grep -E 'aes-xts|not available' | sed "s/^/@@CRYPTSETUP $bits /"
done
