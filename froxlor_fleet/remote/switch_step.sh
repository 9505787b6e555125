#!/bin/sh
# ON THE MANAGED HOST, as a guarded step: the UFW half of a passive-range change around
# the FTP daemon's own step (see passive_switch.py). Runs the daemon's step
# (fragment_apply.sh / pureftpd_apply.sh, which put the daemon back on the previous
# range themselves when they fail); then UFW closes the old range, or, if the daemon's
# step failed, the new one: UFW and the daemon end on one range either way.
#   sh -c "<this file>" froxlor-fleet RUNNER UFW_PROGRAM IF_SWITCHED IF_NOT STEP [ARG...]
# RUNNER runs UFW_PROGRAM with a request (firewall.RUN_WITH_UFW_PYTHON); IF_SWITCHED and
# IF_NOT are ufw_apply.py requests; STEP is the daemon's program text, ARGs its own.
set -u
runner=$1; ufw_program=$2; if_switched=$3; if_not=$4; step=$5
shift 5

if sh -c "$step" froxlor-fleet "$@"; then
  if ! sh -c "$runner" "$ufw_program" "$if_switched" >&2; then
    echo "the FTP daemon uses the new passive range, but UFW could not close the previous one" >&2
    exit 1
  fi
  echo "UFW closed the previous passive range"
else
  rc=$?
  if sh -c "$runner" "$ufw_program" "$if_not" >&2; then
    echo "UFW is back on the previous passive range" >&2
  else
    echo "could not put UFW back on the previous passive range (see above)" >&2
  fi
  exit "$rc"
fi
