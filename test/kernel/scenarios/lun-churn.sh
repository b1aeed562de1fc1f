# Daemon lifecycle: config-file LUNs, a second instance, 20 LUNs created and
# removed through `tcmu-ts lun` while the daemon answers every netlink event.
TS="node $TCMU_TS_ROOT/dist/src/cli/main.js"
mkdir -p /mnt/scratch/luns
cat > /mnt/scratch/tcmu-ts.toml <<TOML
[daemon]
allowed_dirs = ["/mnt/scratch/luns"]

[lun.cfg0]
backstore = "file"
path = "/mnt/scratch/luns/cfg0.img"
size = "64M"
options = { create = 1 }
export = "loop"
TOML

runner_start --config /mnt/scratch/tcmu-ts.toml && result runner ok || result runner fail
# The config LUN is created, served and exported by the daemon itself.
wait_for 60 sh -c 'ls /sys/block | grep -q "^sd"' && result config_lun_disk ok || result config_lun_disk fail
dump_log status_after_config <($TS status) 10
# Its target (the only one so far) completes commands on the completing CPU.
result config_lun_affinity "$(cat /sys/kernel/config/target/loopback/naa.*/param/cmd_completion_affinity 2>&1 | tr '\n' ' ' | sed 's/ $//')"

# A second daemon must refuse to start.
out=$(timeout 30 $TS serve 2>&1); rc=$?
result second_rc "$rc"
printf '%s\n' "$out" | tail -3 | sed 's/^/@@LOG second /'
printf '%s\n' "$out" | grep -q 'already running' && result second_refused ok || result second_refused fail

# Paths outside allowed_dirs are refused when the kernel announces the device.
out=$(timeout 30 $TS lun create evil --backstore file --path /etc/passwd --size 4k 2>&1); rc=$?
result confined_rc "$rc"
printf '%s\n' "$out" | sed 's/^/@@LOG confined /'
printf '%s\n' "$out" | grep -q 'refused the device' && result confined_message ok || result confined_message fail
rmdir /sys/kernel/config/target/core/user_1/evil 2>/dev/null

# 20 LUNs created, each answered (enable would block forever otherwise: bounded
# by timeout). The first three through the CLI, the rest with plain configfs
# writes as targetcli would do them (a CLI start costs seconds under TCG).
created=0
for i in $(seq 1 20); do
  if [ $i -le 3 ]; then
    timeout 60 $TS lun create churn$i --backstore file --path /mnt/scratch/luns/churn$i.img --size 32M --option create=1 >/dev/null 2>>/mnt/scratch/churn.err
  else
    d=/sys/kernel/config/target/core/user_1/churn$i
    mkdir -p $d && echo -n "dev_config=file//mnt/scratch/luns/churn$i.img;create=1,dev_size=$((32<<20))" > $d/control \
      && timeout 60 sh -c "echo 1 > $d/enable" 2>>/mnt/scratch/churn.err
  fi && created=$((created+1))
done
result churn_created "$created"
# An explicit affinity through the CLI; the export goes with the LUN's deletion below.
wwn=$(timeout 60 $TS lun export churn1 --fabric loop --completion-affinity submitter 2>>/mnt/scratch/churn.err)
result cli_export_affinity "$(cat /sys/kernel/config/target/loopback/$wwn/param/cmd_completion_affinity 2>&1)"
served=$($TS status --json | grep -c '"id": "user_1/churn')
result churn_served "$served"
deleted=0
for i in $(seq 1 20); do
  if [ $i -le 3 ]; then timeout 60 $TS lun delete churn$i >/dev/null 2>>/mnt/scratch/churn.err
  else timeout 60 rmdir /sys/kernel/config/target/core/user_1/churn$i 2>>/mnt/scratch/churn.err
  fi && deleted=$((deleted+1))
done
result churn_deleted "$deleted"
dump_log churn_err /mnt/scratch/churn.err 20
left=$($TS status --json | grep -c '"id": "user_1/churn')
result churn_left "$left"
result lun_list_count "$($TS lun list --json | grep -c '"name"')"

runner_stop
dmesg | grep -c 'blocked for more than' | sed 's/^/@@RESULT hung_tasks=/'
dump_log runner "$RUNNER_LOG" 30
echo "@@EXIT 0"
