#!/bin/sh
# Starts (or stops) a one-node Slurm cluster on this machine, for the tests of
# `plasticity sweep --on slurm`: munged, slurmctld and slurmd on loopback, everything (keys,
# sockets, state, logs, slurm.conf) under one folder. Needs Debian's `slurm-wlm` and `munge`
# (apt-get install -y slurm-wlm munge) and root (slurmd runs the jobs as their users).
#
# usage: scripts/slurm-local.sh start|stop|status [DIR]   (DIR: default /tmp/plasticity-slurm)
#
# `start` prints the line to give the Slurm commands this cluster: export SLURM_CONF=DIR/slurm.conf
# (the cluster's daemons run until `stop`). It fits a container: no cgroups
# (proctrack/linuxproc, task/none), no accounting database, no systemd.
set -eu
action=${1:-start}
dir=${2:-/tmp/plasticity-slurm}
conf=$dir/slurm.conf

# Stops the daemons of the pid files and waits (at most 15 s each, then SIGKILL) until they
# are gone, so that a restart finds the ports free.
stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      k=0
      while kill -0 "$pid" 2>/dev/null && [ $k -lt 150 ]; do sleep 0.1; k=$((k + 1)); done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

case $action in
  stop) stop; exit 0 ;;
  status) SLURM_CONF=$conf sinfo; exit $? ;;
  start) ;;
  *) echo "usage: $0 start|stop|status [DIR]" >&2; exit 2 ;;
esac

for tool in munged mungekey slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "slurm-local: $tool not found (apt-get install -y slurm-wlm munge)" >&2
    exit 1
  }
done
[ "$(id -u)" = 0 ] || { echo "slurm-local: needs root (slurmd runs jobs as their users)" >&2; exit 1; }

stop
mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
chmod 700 "$dir/munge"

# munge: our own key and socket (slurm.conf's AuthInfo names the socket).
[ -f "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null
chmod 600 "$dir/munge/munge.key"
socket=$dir/munge/munge.socket.2
munged --force --key-file="$dir/munge/munge.key" --socket="$socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed"

host=$(hostname -s)
# The node as slurmd sees it (CPUs, sockets, memory), on loopback.
node=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
cat > "$conf" <<EOF
ClusterName=plasticity
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=10
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
# No cgroup plugin is used; an empty cgroup.conf keeps slurmd from looking for one elsewhere.
printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\n' > "$dir/cgroup.conf"

SLURM_CONF=$conf slurmctld -f "$conf"
SLURM_CONF=$conf slurmd -f "$conf"

# Wait (at most a minute) until the node takes jobs.
k=0
until SLURM_CONF=$conf sinfo --noheader --states=idle,mixed,allocated -o %n 2>/dev/null | grep -q .; do
  k=$((k + 1))
  if [ $k -gt 60 ]; then
    echo "slurm-local: the node did not come up; logs: $dir/slurmctld.log $dir/slurmd.log" >&2
    SLURM_CONF=$conf sinfo >&2 || true
    exit 1
  fi
  sleep 1
done
echo "export SLURM_CONF=$conf"
