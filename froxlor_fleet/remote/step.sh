#!/bin/sh
# A guarded step, ON THE MANAGED HOST: runs "$@" detached from this SSH session (a
# dropped connection cannot cut a half-applied firewall short) and under the host-wide
# lock /run/froxlor-fleet.lock (two runs never interleave; the second waits, and says
# so). This shell relays the step's output and exit code. It waits without polling:
# the step inherits a lock on $d/running that is released only when it has finished.
#   sh -c "<this file>" froxlor-fleet [--keep-lock] [--stdin] COMMAND [ARG...]
# --keep-lock: the step may leave a process holding the host lock (the commit-confirmed
# revert timer does, until the change is confirmed or reverted). Without it the lock is
# closed for the step, so a daemon it happens to start can never hold it.
# --stdin: this shell's input (a request of any size: an argument is limited to 128 KiB)
# is kept in the step's folder and becomes the step's input; otherwise it reads nothing.
# FROXLOR_FLEET_LOCK: another lock path (tests).
lock=${FROXLOR_FLEET_LOCK:-/run/froxlor-fleet.lock}
keep=no stdin=no
if [ "${1:-}" = --keep-lock ]; then keep=yes; shift; fi
if [ "${1:-}" = --stdin ]; then stdin=yes; shift; fi

# $0: the step's folder, $1: keep, $2: lock path, then the command. (Literal text for
# the inner sh: nothing in it expands here.)
# shellcheck disable=SC2016
detached='
d=$0 keep=$1 lock=$2; shift 2
exec 9>>"$lock"
if ! flock -n 9; then
  echo "froxlor-fleet: another run holds the lock on this host, waiting"
  if ! flock -w 300 9; then
    echo "froxlor-fleet: gave up after 300 s waiting for $lock"
    echo 75 > "$d/rc"; exit
  fi
fi
if [ "$keep" = yes ]; then "$@" <"$d/in" 7>&-; else "$@" <"$d/in" 7>&- 9>&-; fi
echo $? > "$d/rc"
'

d=$(mktemp -d /run/froxlor-fleet.XXXXXX) || exit 1
if [ "$stdin" = yes ]; then cat > "$d/in" || exit 1; else : > "$d/in"; fi
exec 7>"$d/running"
flock 7
setsid -f sh -c "$detached" "$d" "$keep" "$lock" "$@" > "$d/out" 2>&1 < /dev/null
exec 7>&-
flock "$d/running" true
cat "$d/out"
rc=$(cat "$d/rc" 2>/dev/null || echo 70)
rm -rf "$d"
exit "$rc"
