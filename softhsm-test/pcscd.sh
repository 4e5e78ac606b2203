#!/bin/sh
# pcscd.sh — run pcscd (with the vsmartcard vpcd virtual reader) without systemd,
# for rootkeeper's virtual PIV card tests (softhsm-test/pivcard).
#
#   pcscd.sh install   install pcscd, libpcsclite-dev, vsmartcard-vpcd and opensc (root only)
#   pcscd.sh start     start `pcscd -f` in the background unless one is running; wait for
#                      the "Virtual PCD" readers; idempotent and safe to run concurrently
#   pcscd.sh stop      stop the pcscd this script started (by its pid); idempotent
#   pcscd.sh status    exit 0 if pcscd runs and lists the Virtual PCD readers, 3 if not
#
# Only one pcscd can run per machine (its socket path is fixed), so every test process
# shares the one started here. Exit status 2 means "pcscd cannot run on this machine"
# (not installed, or not root and none running); the Go helper skips tests on it
# unless CI=true.
#
# Environment: PCSCD_DEBUG=1 starts pcscd with -d -a (debug and APDU log).
set -eu

if [ -w /run ]; then
	RUNDIR=/run/rootkeeper-pcscd
else
	RUNDIR="${TMPDIR:-/tmp}/rootkeeper-pcscd"
fi
PIDFILE="$RUNDIR/pcscd.pid"
LOGFILE="$RUNDIR/pcscd.log"
LOCKFILE="$RUNDIR/pcscd.lock"
SYSPIDFILE=/run/pcscd/pcscd.pid
VPCD_DRIVER=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
PACKAGES="pcscd libpcsclite-dev vsmartcard-vpcd opensc"

log() { echo "pcscd.sh: $*" >&2; }

# is_pcscd PID: true if PID is alive and is a pcscd process.
# A zombie (exited, not yet reaped) does not count.
is_pcscd() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
		[ "$(cat "/proc/$1/comm" 2>/dev/null)" = pcscd ] &&
		! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

# running_pid: prints the pid of the running pcscd (ours or another one), if any.
running_pid() {
	for f in "$PIDFILE" "$SYSPIDFILE"; do
		p=$(cat "$f" 2>/dev/null || true)
		if is_pcscd "$p"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

readers_ok() {
	opensc-tool -l 2>/dev/null | grep -q "Virtual PCD"
}

installed() {
	command -v pcscd >/dev/null 2>&1 && command -v opensc-tool >/dev/null 2>&1 &&
		[ -f "$VPCD_DRIVER" ]
}

cmd_install() {
	if installed && [ -f /usr/include/PCSC/winscard.h ]; then
		log "already installed"
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "pcscd.sh: run as root:" >&2
		echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES" >&2
		exit 1
	fi
	apt-get update
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES
}

cmd_start() {
	if ! installed; then
		log "pcscd, opensc-tool or the vpcd driver is missing; run: $0 install"
		exit 2
	fi
	mkdir -p "$RUNDIR"
	# Serialize concurrent starts from parallel test processes.
	exec 9>>"$LOCKFILE"
	if ! flock -w 60 9; then
		log "timed out waiting for $LOCKFILE"
		exit 1
	fi
	if ! pid=$(running_pid); then
		if [ "$(id -u)" != 0 ] && [ ! -w /run/pcscd ] && [ ! -w /run ]; then
			log "pcscd is not running and only root can start it (it needs /run/pcscd)"
			exit 2
		fi
		rm -f "$PIDFILE"
		flags=-f
		if [ "${PCSCD_DEBUG:-}" = 1 ]; then
			flags="-f -d -a"
		fi
		# setsid: leave the caller's session; redirections: never hold the caller's pipes
		# (go test waits for them to close).
		# shellcheck disable=SC2086
		setsid pcscd $flags </dev/null >>"$LOGFILE" 2>&1 9>&- &
		pid=$!
		echo "$pid" >"$PIDFILE"
		log "started pcscd (pid $pid, log $LOGFILE)"
	fi
	i=0
	while ! readers_ok; do
		if ! is_pcscd "$pid"; then
			log "pcscd (pid $pid) exited; last log lines:"
			tail -n 20 "$LOGFILE" >&2 2>/dev/null || true
			exit 1
		fi
		i=$((i + 1))
		if [ "$i" -gt 100 ]; then
			log "pcscd (pid $pid) runs but lists no \"Virtual PCD\" reader after 10 s (is /etc/reader.conf.d/vpcd there?)"
			exit 1
		fi
		sleep 0.1
	done
	echo "pcscd running (pid $pid)"
}

cmd_stop() {
	p=$(cat "$PIDFILE" 2>/dev/null || true)
	if ! is_pcscd "$p"; then
		rm -f "$PIDFILE"
		if p=$(running_pid); then
			log "pcscd (pid $p) was not started by this script; leaving it alone"
		else
			echo "pcscd not running"
		fi
		return 0
	fi
	kill -TERM "$p"
	i=0
	while is_pcscd "$p"; do
		i=$((i + 1))
		if [ "$i" -gt 50 ]; then
			log "pcscd (pid $p) did not exit after 5 s"
			exit 1
		fi
		sleep 0.1
	done
	rm -f "$PIDFILE"
	echo "pcscd stopped (pid $p)"
}

cmd_status() {
	if p=$(running_pid); then
		if readers_ok; then
			echo "pcscd running (pid $p), Virtual PCD readers present"
			return 0
		fi
		echo "pcscd running (pid $p), no Virtual PCD reader"
		exit 3
	fi
	echo "pcscd not running"
	exit 3
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
	echo "usage: $0 install|start|stop|status" >&2
	exit 64
	;;
esac
