#!/bin/sh
# ON THE MANAGED HOST, as a guarded step (under the host lock): pure-ftpd's passive range.
#
#   RANGE FORCE_IP MARKER
#
# Debian's pure-ftpd wrapper reads one option per file: /etc/pure-ftpd/conf/
# PassivePortRange ("LOW HIGH") and ForcePassiveIP (removed when FORCE_IP is ""). A
# running pure-ftpd is restarted (it has no reload) and must come back; if it does not,
# the previous files are put back and it is restarted on them (MARKER removed if that
# fails too), exit 1. On success MARKER holds the sha256 of what pure-ftpd now runs
# with ("PassivePortRange RANGE\n", then "ForcePassiveIP FORCE_IP\n" if set: see
# pureftpd.digest): files written without a restart (a run cut short) leave it behind
# them, and the next run restarts. In a passive-range change, switch_step.sh runs this
# and then moves UFW. The backup lives in the step's folder (FROXLOR_FLEET_STEP_DIR,
# root-only, from step.sh), removed on every way out. FROXLOR_FLEET_ROOT: another / (tests).
set -u
range=$1; ip=$2; marker=$3
root=${FROXLOR_FLEET_ROOT:-}
conf=$root/etc/pure-ftpd/conf
pidfile=$root/run/pure-ftpd/pure-ftpd.pid

prev=$(mktemp -d "${FROXLOR_FLEET_STEP_DIR:?run as a guarded step (step.sh)}/pureftpd.XXXXXX") || exit 1
trap 'rm -rf "$prev"' EXIT
trap 'exit 1' INT TERM HUP
for k in PassivePortRange ForcePassiveIP; do
  if [ -f "$conf/$k" ]; then cp -p "$conf/$k" "$prev/$k"; fi
done
restore() {
  for k in PassivePortRange ForcePassiveIP; do
    if [ -f "$prev/$k" ]; then cp -p "$prev/$k" "$conf/$k"; else rm -f "$conf/$k"; fi
  done
}

# The service of the installed flavour (froxlor installs pure-ftpd-mysql).
service=
for n in pure-ftpd-mysql pure-ftpd-postgresql pure-ftpd-ldap pure-ftpd; do
  if [ -e "$root/lib/systemd/system/$n.service" ] || [ -e "$root/etc/systemd/system/$n.service" ] \
     || [ -x "$root/etc/init.d/$n" ]; then service=$n; break; fi
done

running() {
  if [ -d "$root/run/systemd/system" ]; then systemctl is-active --quiet "$service"
  else [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
  fi
}
restart() {
  if [ -d "$root/run/systemd/system" ]; then systemctl restart "$service" || return 1
  else "$root/etc/init.d/$service" restart >/dev/null || return 1
  fi
  sleep 0.5  # it forks and writes its pidfile
  running
}
fail() {
  echo "$1" >&2
  exit 1
}

mkdir -p "$conf"
was_running=no
if [ -n "$service" ] && running; then was_running=yes; fi
# Written in place: the wrapper reads every file in conf/ as an option (no temporary
# files there), and only when pure-ftpd (re)starts, which comes after.
printf '%s\n' "$range" > "$conf/PassivePortRange"
if [ -n "$ip" ]; then
  printf '%s\n' "$ip" > "$conf/ForcePassiveIP"
else
  rm -f "$conf/ForcePassiveIP"
fi
if [ $was_running = yes ]; then
  if ! restart; then
    restore
    if ! restart >/dev/null 2>&1; then
      rm -f "$marker"  # what pure-ftpd runs with is unknown now: the next run restarts it
      echo "pure-ftpd did not come back on the previous files either" >&2
    fi
    fail "pure-ftpd did not come back with the new passive range ($service), previous files restored"
  fi
  echo "pure-ftpd restarted ($service)"
else
  echo "pure-ftpd is not running; the range applies when it starts"
fi
mkdir -p "$(dirname "$marker")"
{
  printf 'PassivePortRange %s\n' "$range"
  if [ -n "$ip" ]; then printf 'ForcePassiveIP %s\n' "$ip"; fi
} | sha256sum | cut -d' ' -f1 > "$marker"
