#!/bin/sh
# A worker node with a single-node Slurm: munged, slurmctld and slurmd for this container's
# host name with the CPUs and memory it sees, then the command (default: sleep forever).
# Pilots and batch jobs run as the unprivileged user pilotwms.
set -eu
NODE=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/{print int($2/1024*0.8)}' /proc/meminfo)
PORT=${SLURM_CTLD_PORT:-6817}
install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 755 /run/munge
[ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
install -d -o slurm -g slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=pilotwms
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ReturnToService=2
# daemons listen on their NodeAddr/SlurmctldHost address (127.0.0.1), not on every interface
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=pilots Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
su -s /bin/sh munge -c "munged --force"
slurmctld
slurmd
exec "$@"
