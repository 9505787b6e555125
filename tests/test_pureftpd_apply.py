"""remote/pureftpd_apply.sh run for real on a folder standing in for / (FROXLOR_FLEET_ROOT)
with a stand-in init script (issue 22): after a restart it records what pure-ftpd loaded
(the marker pureftpd.py compares), keeps its backup in the step's folder, and leaves
nothing behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from froxlor_fleet import pureftpd
from froxlor_fleet.remote import program

# Restarts "pure-ftpd": logs the range it loads; $FAIL_RESTART: it does not come back.
FAKE_INIT = """#!/bin/sh
root=$FROXLOR_FLEET_ROOT
if [ -e "$root/fail" ]; then rm -f "$root/run/pure-ftpd/pure-ftpd.pid"; exit 1; fi
cat "$root/etc/pure-ftpd/conf/PassivePortRange" >> "$root/loaded.log"
echo "$TEST_PID" > "$root/run/pure-ftpd/pure-ftpd.pid"
"""


def host(tmp: Path, range_: str | None = "49152 65534") -> Path:
    root = tmp / "root"
    (root / "etc/pure-ftpd/conf").mkdir(parents=True)
    (root / "etc/init.d").mkdir(parents=True)
    (root / "run/pure-ftpd").mkdir(parents=True)
    (root / "etc/init.d/pure-ftpd-mysql").write_text(FAKE_INIT)
    (root / "etc/init.d/pure-ftpd-mysql").chmod(0o755)
    (root / "run/pure-ftpd/pure-ftpd.pid").write_text(f"{os.getpid()}\n")
    if range_ is not None:
        (root / "etc/pure-ftpd/conf/PassivePortRange").write_text(range_ + "\n")
    (tmp / "step").mkdir()
    (tmp / "tmpdir").mkdir()
    return root


def apply(tmp: Path, range_: str, ip: str, marker: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FROXLOR_FLEET_ROOT=str(tmp / "root"), TEST_PID=str(os.getpid()),
               FROXLOR_FLEET_STEP_DIR=str(tmp / "step"), TMPDIR=str(tmp / "tmpdir"))
    return subprocess.run(["sh", "-c", program("pureftpd_apply.sh"), "froxlor-fleet", range_, ip,
                           str(marker)], capture_output=True, text=True, env=env, timeout=30)


def test_a_restart_records_what_pure_ftpd_loaded(tmp_path: Path) -> None:
    root = host(tmp_path)
    marker = tmp_path / "state/pureftpd.loaded"
    res = apply(tmp_path, "50000 50100", "192.0.2.7", marker)
    assert res.returncode == 0, res.stderr
    assert (root / "loaded.log").read_text() == "50000 50100\n"
    assert marker.read_text().strip() == pureftpd.digest(
        pureftpd.wanted_files((50000, 50100), "192.0.2.7"))
    assert (root / "etc/pure-ftpd/conf/ForcePassiveIP").read_text() == "192.0.2.7\n"
    assert list((tmp_path / "step").iterdir()) == [] and list((tmp_path / "tmpdir").iterdir()) == []


def test_a_failed_restart_keeps_the_marker_of_the_previous_range(tmp_path: Path) -> None:
    root = host(tmp_path)
    marker = tmp_path / "loaded"
    marker.write_text("before\n")
    (root / "fail").touch()
    res = apply(tmp_path, "50000 50100", "", marker)
    assert res.returncode == 1
    assert "previous files restored" in res.stderr
    assert "did not come back on the previous files either" in res.stderr
    assert not marker.exists()  # unknown what runs: the next run restarts it
    assert (root / "etc/pure-ftpd/conf/PassivePortRange").read_text() == "49152 65534\n"
    assert list((tmp_path / "step").iterdir()) == [] and list((tmp_path / "tmpdir").iterdir()) == []
