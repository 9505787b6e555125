#!/bin/sh
# ON THE MANAGED HOST, as a guarded step (under the host lock): pure-ftpd's passive range.
#
#   RANGE FORCE_IP
#
# Debian's pure-ftpd wrapper reads one option per file: /etc/pure-ftpd/conf/
# PassivePortRange ("LOW HIGH") and ForcePassiveIP (removed when FORCE_IP is ""). A
# running pure-ftpd is restarted (it has no reload) and must come back; if it does not,
# the previous files are put back and it is restarted on them, exit 1. In a
# passive-range change, switch_step.sh runs this and then moves UFW.
set -u
range=$1; ip=$2
conf=/etc/pure-ftpd/conf

prev=$(mktemp -d)
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
  if [ -e "/lib/systemd/system/$n.service" ] || [ -e "/etc/systemd/system/$n.service" ] \
     || [ -x "/etc/init.d/$n" ]; then service=$n; break; fi
done

running() {
  if [ -d /run/systemd/system ]; then systemctl is-active --quiet "$service"
  else [ -s /run/pure-ftpd/pure-ftpd.pid ] && kill -0 "$(cat /run/pure-ftpd/pure-ftpd.pid)" 2>/dev/null
  fi
}
restart() {
  if [ -d /run/systemd/system ]; then systemctl restart "$service" || return 1
  else "/etc/init.d/$service" restart >/dev/null || return 1
  fi
  sleep 0.5  # it forks and writes its pidfile
  running
}
fail() {
  echo "$1" >&2
  rm -rf "$prev"
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
    restart >/dev/null 2>&1 || echo "pure-ftpd did not come back on the previous files either" >&2
    fail "pure-ftpd did not come back with the new passive range ($service), previous files restored"
  fi
  echo "pure-ftpd restarted ($service)"
else
  echo "pure-ftpd is not running; the range applies when it starts"
fi
rm -rf "$prev"
