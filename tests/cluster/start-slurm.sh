#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine for tests/cluster/test_slurm.py.
#
# One node named after `hostname`, with the CPUs and memory `slurmd -C` reports, in one default
# partition `debug`; job accounting in MariaDB through slurmdbd, because the SLURM executor
# plugin asks `sacct` for job states whenever `sacct` is installed. Works inside a container
# without systemd or cgroup delegation: every daemon is started directly in the background
# (proctrack/linuxproc, task/none, jobacct_gather/linux; no cgroup plugin is used).
# Where `nvidia-smi -L` lists GPUs, the node also offers them as GRES `gpu`.
#
# Idempotent: a cluster that already answers with an idle/mixed/allocated node is left alone;
# each daemon is started only when it is not running. Needs root (apt-get, /etc/slurm, daemons)
# and Debian/Ubuntu. Prints what it does. Stop it with tests/cluster/stop-slurm.sh.
#
#   sudo tests/cluster/start-slurm.sh
#   FORCE=1 tests/cluster/start-slurm.sh   # overwrite a slurm.conf this script did not write
set -euo pipefail

MARK="# written by saltseg tests/cluster/start-slurm.sh"
CLUSTER=saltseg
PARTITION=debug
HOST=$(hostname -s)
DB_PASS=saltseg-slurm # local test database only: MariaDB listens on localhost
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm-saltseg

say() { printf '[start-slurm] %s\n' "$*"; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND once a second
	local limit=$1 what=$2
	shift 2
	for ((i = 0; i < limit; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	say "gave up waiting for $what after ${limit}s"
	return 1
}

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1; }

if [[ $(id -u) -ne 0 ]]; then
	echo "start-slurm.sh: run as root (installs packages and starts daemons)" >&2
	exit 2
fi

case "$(node_state)" in
idle* | mixed* | allocated* | completing*)
	say "cluster already up: node $HOST is $(node_state)"
	sinfo
	exit 0
	;;
esac

# 1. Packages.
need=()
for pair in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sbatch:slurm-client \
	munged:munge mariadbd:mariadb-server; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if ((${#need[@]})); then
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
	say "packages present: $(slurmctld -V)"
fi
mkdir -p "$LOG_DIR" "$RUN_DIR" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd

# 2. munge: the authentication every SLURM daemon and client uses.
if [[ ! -s /etc/munge/munge.key ]]; then
	say "creating /etc/munge/munge.key"
	dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
	say "munged already running"
else
	say "starting munged"
	runuser -u munge -- /usr/sbin/munged
	touch "$RUN_DIR/started-munged" # stop-slurm.sh stops only what this script started
	wait_for 20 munged sh -c 'munge -n | unmunge'
fi

# 3. MariaDB and the accounting database.
if mysqladmin ping >/dev/null 2>&1; then
	say "mariadb already running"
else
	say "starting mariadb"
	mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
	setsid nohup mysqld_safe >"$LOG_DIR/mariadb-start.log" 2>&1 </dev/null &
	touch "$RUN_DIR/started-mariadb"
	wait_for 60 mariadb mysqladmin ping
fi
mysql -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
say "database slurm_acct_db ready"

# 4. Configuration: one node with what slurmd itself detects.
if [[ -f /etc/slurm/slurm.conf ]] && ! grep -qF "$MARK" /etc/slurm/slurm.conf \
	&& [[ ${FORCE:-0} != 1 ]]; then
	echo "start-slurm.sh: /etc/slurm/slurm.conf was not written by this script;" \
		"set FORCE=1 to replace it" >&2
	exit 2
fi
node_line=$(slurmd -C | head -1) # NodeName=... CPUs=... Boards=... RealMemory=...
cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
memory=$((memory * 95 / 100)) # leave room for the OS and the daemons
hardware=$(sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//' <<<"$node_line")
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
	gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
gres_types="" gres_node=""
if ((gpus > 0)); then
	gres_types="GresTypes=gpu"
	gres_node="Gres=gpu:$gpus"
	printf '%s\nNodeName=%s Name=gpu File=/dev/nvidia[0-%d]\n' "$MARK" "$HOST" $((gpus - 1)) \
		>/etc/slurm/gres.conf
fi
say "node $HOST: $hardware RealMemory=$memory GPUs=$gpus"

cat >/etc/slurm/slurm.conf <<CONF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# no systemd, no cgroup delegation in a container: track processes through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
MpiDefault=none
SwitchType=switch/none
# schedule cores and memory, so jobs share the node as their --cpus-per-task/--mem allow
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# accounting through slurmdbd: sacct answers for finished jobs
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
# keep the executor's --comment (rule and wildcards) so sacct can show which rule a job ran
AccountingStoreFlags=job_comment
ReturnToService=2
SlurmdTimeout=300
MinJobAge=600
$gres_types
NodeName=$HOST $hardware RealMemory=$memory $gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

cat >/etc/slurm/slurmdbd.conf <<CONF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf
say "wrote /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf"

running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# 5. Daemons: slurmdbd, then the cluster's association, then slurmctld and slurmd.
if running "$RUN_DIR/slurmdbd.pid"; then
	say "slurmdbd already running"
else
	say "starting slurmdbd"
	slurmdbd
	wait_for 60 slurmdbd sacctmgr -n list cluster
fi
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
	say "registering cluster $CLUSTER in the accounting database"
	sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if running "$RUN_DIR/slurmctld.pid"; then
	say "slurmctld running: reconfiguring"
	scontrol reconfigure
else
	say "starting slurmctld"
	slurmctld
	wait_for 60 slurmctld scontrol ping
fi
if running "$RUN_DIR/slurmd.pid"; then
	say "slurmd already running"
else
	say "starting slurmd"
	slurmd
fi

# 6. Wait for the node to take jobs (a node left down by an earlier run is resumed).
for ((i = 0; i < 60; i++)); do
	state=$(node_state)
	case "$state" in
	idle* | mixed* | allocated*) break ;;
	down* | drain*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
	esac
	sleep 1
done
state=$(node_state)
if [[ $state != idle* && $state != mixed* && $state != allocated* ]]; then
	say "node $HOST is '${state:-unknown}', not idle; see $LOG_DIR/slurmctld.log and slurmd.log"
	exit 1
fi
say "cluster $CLUSTER up: $(sinfo -V), node $HOST $state"
sinfo
