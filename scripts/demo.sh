#!/usr/bin/env bash
# The main job on the lab fleet: set-up, lab up, preview (--dry --diff), roll out,
# per-host result and a port check. LAB_N hosts (default 5). Leaves the lab up;
# remove it with: python3 lab/lab.py down
source "$(dirname "$0")/setup.sh"
cd "$ROOT"
N=${LAB_N:-5}
"$PY" lab/lab.py up "$N"
cd .lab
echo; echo "==> Preview: pyinfra inventory.py deploy.py --dry --diff"
pyinfra inventory.py ../deploy.py --dry --diff
echo; echo "==> Roll out: pyinfra -y inventory.py deploy.py"
pyinfra -y inventory.py ../deploy.py
echo; echo "==> Second run (must change nothing)"
pyinfra -y inventory.py ../deploy.py 2>&1 | sed -n '/Results:/,$p'
echo; echo "==> Read-only fleet audit: python -m froxlor_fleet audit inventory.py"
"$PY" -m froxlor_fleet audit inventory.py || true
cd "$ROOT"
echo; echo "==> Result per host and port check from the control side"
"$PY" lab/lab.py check
