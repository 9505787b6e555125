#!/usr/bin/env bash
# The main job on the lab fleet: set-up, lab up, preview (--dry --diff), roll out,
# per-host result and a port check. LAB_N hosts (default 5). Leaves the lab up;
# remove it with: python3 lab/lab.py down
# LAB_KIND=systemd: the same on Debian hosts with systemd as PID 1 instead
# (lab/systemd_hosts.py; LAB_RELEASES, default bullseye,bookworm,trixie, LAB_N per
# release, default 1, plus a bookworm host with froxlor's pure-ftpd); remove it with
# python3 lab/systemd_hosts.py down
source "$(dirname "$0")/setup.sh"
cd "$ROOT"
if [ "${LAB_KIND:-namespace}" = systemd ]; then
  lab=lab/systemd_hosts.py; dir=.lab-systemd
  "$PY" lab/systemd_hosts.py up --release "${LAB_RELEASES:-bullseye,bookworm,trixie}" \
    --per-release "${LAB_N:-1}" --pureftpd
else
  lab=lab/lab.py; dir=.lab
  "$PY" lab/lab.py up "${LAB_N:-5}"
fi
cd "$dir"
echo; echo "==> Preview: pyinfra inventory.py deploy.py --dry --diff"
pyinfra inventory.py ../examples/deploy.py --dry --diff
echo; echo "==> Roll out: pyinfra -y inventory.py deploy.py"
pyinfra -y inventory.py ../examples/deploy.py
echo; echo "==> Second run (must change nothing)"
pyinfra -y inventory.py ../examples/deploy.py 2>&1 | sed -n '/Results:/,$p'
echo; echo "==> Read-only fleet audit: python -m froxlor_fleet audit inventory.py"
"$PY" -m froxlor_fleet audit inventory.py || true
cd "$ROOT"
echo; echo "==> Result per host and port check from the control side"
"$PY" "$lab" check
