#!/usr/bin/env bash
# Stop the single-node SLURM cluster that tests/cluster/start-slurm.sh started: slurmd, slurmctld
# and slurmdbd, plus MariaDB and munged where that script started them, each by its recorded
# process id. Idempotent: a daemon that is not running is skipped. Configuration, spool and the
# accounting database are kept, so the next start-slurm.sh resumes with the same job history.
set -uo pipefail

RUN_DIR=/run/slurm-saltseg

say() { printf '[stop-slurm] %s\n' "$*"; }

stop_pid() { # stop_pid NAME PIDFILE: TERM the recorded process, wait up to 30 s for it to exit
	local name=$1 file=$2 pid
	if [[ ! -s $file ]] || ! kill -0 "$(cat "$file")" 2>/dev/null; then
		say "$name not running"
		return 0
	fi
	pid=$(cat "$file")
	say "stopping $name (pid $pid)"
	kill -TERM "$pid"
	for ((i = 0; i < 30; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 1
	done
	say "$name (pid $pid) still running after 30 s"
	return 1
}

if [[ $(id -u) -ne 0 ]]; then
	echo "stop-slurm.sh: run as root" >&2
	exit 2
fi

stop_pid slurmd "$RUN_DIR/slurmd.pid"
stop_pid slurmctld "$RUN_DIR/slurmctld.pid"
stop_pid slurmdbd "$RUN_DIR/slurmdbd.pid"
# MariaDB and munged only when start-slurm.sh started them (they may serve other things)
if [[ -e $RUN_DIR/started-mariadb ]] && mysqladmin ping >/dev/null 2>&1; then
	say "stopping mariadb"
	mysqladmin shutdown && rm -f "$RUN_DIR/started-mariadb"
else
	say "mariadb: not started by start-slurm.sh or not running, left alone"
fi
if [[ -e $RUN_DIR/started-munged ]]; then
	stop_pid munged /run/munge/munged.pid && rm -f "$RUN_DIR/started-munged"
else
	say "munged: not started by start-slurm.sh, left alone"
fi
say "done"
