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
# FROXLOR_FLEET_LOCK: another lock path (tests); the step's folder is made beside it
# (root-only, /run/froxlor-fleet.XXXXXX) and handed to the step as FROXLOR_FLEET_STEP_DIR
# for its own temporary files. A relay killed while its step runs leaves the folder to
# the step (it still writes there); the next relay removes such leftovers once no
# relay and no step holds them (a relay holds a lock on its folder, a step on
# "$d/running").
lock=${FROXLOR_FLEET_LOCK:-/run/froxlor-fleet.lock}
keep=no stdin=no
if [ "${1:-}" = --keep-lock ]; then keep=yes; shift; fi
if [ "${1:-}" = --stdin ]; then stdin=yes; shift; fi

# $0: the step's folder, $1: keep, $2: lock path, then the command. (Literal text for
# the inner sh: nothing in it expands here.)
# shellcheck disable=SC2016
detached='
d=$0 keep=$1 lock=$2; shift 2
export FROXLOR_FLEET_STEP_DIR="$d"
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

base=${lock%/*}
d=
# On the way out (a signal too): the folder goes unless its step still runs.
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  exec 7>&-
  if [ -n "$d" ] && flock -n "$d/running" true 2>/dev/null; then rm -rf "$d"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
d=$(mktemp -d "$base/froxlor-fleet.XXXXXX") || exit 1
exec 6<"$d"
flock 6  # this relay's: the folder is in use

# Leftovers of killed relays: no relay holds the folder, no step holds its "running",
# and it is older than a minute (a new relay locks its folder right after making it).
for old in "$base"/froxlor-fleet.??????; do
  if [ "$old" = "$d" ] || [ ! -d "$old" ] || [ -L "$old" ]; then continue; fi
  if [ -z "$(find "$old" -maxdepth 0 -mmin +1 2>/dev/null)" ]; then continue; fi
  flock -n "$old" true 2>/dev/null || continue
  if [ -e "$old/running" ] && ! flock -n "$old/running" true 2>/dev/null; then continue; fi
  rm -rf "$old"
done

if [ "$stdin" = yes ]; then cat > "$d/in" || exit 1; else : > "$d/in"; fi
exec 7>"$d/running"
flock 7
setsid -f sh -c "$detached" "$d" "$keep" "$lock" "$@" > "$d/out" 2>&1 < /dev/null 6<&-
exec 7>&-
# In the background: a signal to this shell is handled at once, not after the step.
flock "$d/running" true </dev/null >/dev/null 2>&1 & wait $!
cat "$d/out"
rc=$(cat "$d/rc" 2>/dev/null || echo 70)
exit "$rc"
