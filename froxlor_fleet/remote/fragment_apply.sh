#!/bin/sh
# ON THE MANAGED HOST, as a guarded step: make the ProFTPd fragment $1 exactly $2 ("" =
# remove it), test the whole configuration with `proftpd -t`, put the previous fragment
# back if the test fails (exit 1 with ProFTPd's own message), reload ProFTPd only on
# success (systemd, or SIGHUP under plain init).
set -u
path=$1; content=$2
prev=$(mktemp); had=no
if [ -f "$path" ]; then cp -p "$path" "$prev"; had=yes; fi
if [ -n "$content" ]; then
  tmp=$(mktemp); printf '%s' "$content" > "$tmp"; chmod 0644 "$tmp"; mv -f "$tmp" "$path"
else
  rm -f "$path"
fi
# proftpd 1.3.8 exits 0 when an included file has a fatal error: check the text too.
out=$(proftpd -t 2>&1); rc=$?
if [ $rc -ne 0 ] || printf '%s\n' "$out" | grep -q 'fatal:'; then
  if [ $had = yes ]; then mv -f "$prev" "$path"; else rm -f "$path" "$prev"; fi
  echo "proftpd -t rejected the configuration, previous fragment restored:" >&2
  printf '%s\n' "$out" | grep -v '^Checking syntax' >&2
  exit 1
fi
rm -f "$prev"
if [ -d /run/systemd/system ]; then
  if systemctl is-active --quiet proftpd; then systemctl reload proftpd && echo "proftpd reloaded"
  else echo "proftpd is not running; the fragment applies when it starts"; fi
elif [ -s /run/proftpd.pid ] && kill -0 "$(cat /run/proftpd.pid)" 2>/dev/null; then
  kill -HUP "$(cat /run/proftpd.pid)" && echo "proftpd reloaded (SIGHUP)"
else
  echo "proftpd is not running; the fragment applies when it starts"
fi
