#!/bin/sh
# ON THE MANAGED HOST, as a guarded step (under the host lock): the ProFTPd fragment.
#
#   check PATH CONTENT
#       Would ProFTPd accept CONTENT at PATH? The candidate is put in place only for
#       `proftpd -t`, then the previous file is put back; ProFTPd is not restarted, so
#       nothing changes. Runs before any firewall change (exit 1: ProFTPd's message).
#   apply PATH CONTENT MARKER
#       Make PATH exactly CONTENT ("" = remove it), test the whole configuration with
#       `proftpd -t`, restart a running ProFTPd (systemd, or its init script) and check
#       it runs; then write CONTENT's sha256 to MARKER (what ProFTPd has loaded). On
#       any failure the previous fragment is put back and ProFTPd restarted on it (the
#       marker is removed if that fails too: the next run restarts it), exit 1.
#       In a passive-range change, switch_step.sh runs this and then moves UFW.
set -u
mode=$1; path=$2; content=$3

# `proftpd -t` passes when it exits 0 and prints no "fatal:" (ProFTPd 1.3.7a-1.3.8c
# exit 0 when an included file has a fatal error).
config_ok() {
  out=$(proftpd -t 2>&1); rc=$?
  [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -q 'fatal:'
}
proftpd_says() { printf '%s\n' "$out" | grep -v '^Checking syntax' >&2; }

prev=$(mktemp); had=no
if [ -f "$path" ]; then cp -p "$path" "$prev"; had=yes; fi
put() {  # $1: the fragment text ("" = no fragment)
  if [ -n "$1" ]; then
    # beside conf.d, not in it: ProFTPd includes every file there, temporary ones too
    tmp=$(mktemp "${path%/*}/../.froxlor-fleet-fragment.XXXXXX")
    printf '%s' "$1" > "$tmp"; chmod 0644 "$tmp"; mv -f "$tmp" "$path"
  else
    rm -f "$path"
  fi
}
restore() {
  if [ $had = yes ]; then mv -f "$prev" "$path"; else rm -f "$path" "$prev"; fi
}

if [ "$mode" = check ]; then
  put "$content"
  if config_ok; then restore; exit 0; fi
  restore
  echo "proftpd -t rejects the new passive-port fragment; nothing was changed on this host:" >&2
  proftpd_says
  exit 1
fi

marker=$4

pid_running() { [ -s /run/proftpd.pid ] && kill -0 "$(cat /run/proftpd.pid)" 2>/dev/null; }
# Restart a running ProFTPd (a stopped one reads the file when it starts) and check it
# runs again. Not a SIGHUP reload: with froxlor's ratelimit file (mod_ban) a SIGHUP
# kills ProFTPd 1.3.7a-1.3.8c (signal 11), seen on Debian 11-13; froxlor's own
# templates restart it too. Prints what it did; exit 1 when ProFTPd does not come back.
restart() {
  if [ -d /run/systemd/system ]; then
    if ! systemctl is-active --quiet proftpd; then
      echo "proftpd is not running; the fragment applies when it starts"; return 0
    fi
    systemctl restart proftpd || return 1
    systemctl is-active --quiet proftpd || return 1
    echo "proftpd restarted"
  elif pid_running; then
    if [ -x /etc/init.d/proftpd ]; then
      /etc/init.d/proftpd restart >/dev/null || return 1
    else
      kill -TERM "$(cat /run/proftpd.pid)" || return 1
      i=0; while pid_running && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
      proftpd || return 1
    fi
    sleep 0.2  # it forks and writes its pidfile
    pid_running || return 1
    echo "proftpd restarted"
  else
    echo "proftpd is not running; the fragment applies when it starts"
  fi
}
fail() {  # $1: what went wrong (the previous fragment is back)
  echo "$1" >&2
  exit 1
}

put "$content"
if ! config_ok; then
  restore
  proftpd_says
  fail "proftpd -t rejected the configuration, previous fragment restored"
fi
if ! said=$(restart 2>&1); then
  if [ -n "$said" ]; then printf '%s\n' "$said" >&2; fi
  restore
  if ! restart >/dev/null 2>&1; then
    rm -f "$marker"  # what ProFTPd runs with is unknown now: the next run restarts it
    echo "ProFTPd did not come back on the previous fragment either" >&2
  fi
  fail "ProFTPd did not restart with the new fragment, previous fragment restored"
fi
rm -f "$prev"
printf '%s\n' "$said"
mkdir -p "$(dirname "$marker")"
if [ -n "$content" ]; then
  printf '%s' "$content" | sha256sum | cut -d' ' -f1 > "$marker"
else
  rm -f "$marker"
fi
