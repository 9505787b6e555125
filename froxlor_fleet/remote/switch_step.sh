#!/bin/sh
# ON THE MANAGED HOST, as a guarded step: the UFW half of a passive-range change around
# the FTP daemon's own step (see passive_switch.py). Runs the daemon's step
# (fragment_apply.sh / pureftpd_apply.sh, which put the daemon back on the previous
# range themselves when they fail); then UFW closes the old range, or, if the daemon's
# step failed, the new one: UFW and the daemon end on one range either way.
#   sh -c "<this file>" froxlor-fleet RUNNER UFW_PROGRAM STEP [ARG...] < REQUESTS
# RUNNER runs UFW_PROGRAM with a request (firewall.RUN_WITH_UFW_PYTHON); REQUESTS (stdin)
# is one JSON object holding the two ufw_apply.py requests, "if_switched" and "if_not"
# (on stdin: an argument may hold at most 128 KiB); STEP is the daemon's program text,
# ARGs its own.
set -u
runner=$1; ufw_program=$2; step=$3
shift 3
requests=$(cat)  # a variable, not an argument: no size limit (printf is a builtin)

ufw_apply() {  # $1: which request
  printf '%s\n' "$requests" | sh -c "$runner" "$ufw_program" "$1"
}

if sh -c "$step" froxlor-fleet "$@" </dev/null; then
  if ! ufw_apply if_switched >&2; then
    echo "the FTP daemon uses the new passive range, but UFW could not close the previous one" >&2
    exit 1
  fi
  echo "UFW closed the previous passive range"
else
  rc=$?
  if ufw_apply if_not >&2; then
    echo "UFW is back on the previous passive range" >&2
  else
    echo "could not put UFW back on the previous passive range (see above)" >&2
  fi
  exit "$rc"
fi
