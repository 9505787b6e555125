"""What each host process of the host program loads (issue 22, speed: on a lab of 30
hosts sharing 2 cores the rollout is bound by the hosts' CPU, and every module a host
process imports is paid for on every host, every run). Run as the host runs them
(``hostprogram.RUNNER``: ufw's python3 -I -S) with ``-X importtime`` added, the placed
files alone: ``status`` and ``confirm`` (the confirm connection of every changed host)
load neither ufw nor typing, dataclasses or inspect; ``apply`` loads ufw (it changes
UFW) but not typing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from froxlor_fleet.operations import hostprogram
from froxlor_fleet.remote import commit
from test_hostprogram import place

# What confirm and status do without: typing, dataclasses and inspect (~25 ms of
# imports a process), ufw (only a change needs it); nor what only a change or a revert
# uses (json, signal and its enum, threading), nor re and shutil (~12 ms: confirm
# removes its entry with os.walk).
HEAVY = {"typing", "dataclasses", "inspect", "ufw",
         "json", "signal", "enum", "threading", "re", "shutil"}
TOKEN = "5f0a1b2c-0123456789abcdef"


def imported(folder: Path, root: Path, *args: str, stdin: str = ""
             ) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``fleethost.py ARGS`` as ``RUNNER`` runs it, with ``-X importtime``: the run, and
    every module it imported (the interpreter's own startup modules included)."""
    runner = hostprogram.RUNNER.replace(" -I -S ", " -I -S -X importtime ")
    assert runner != hostprogram.RUNNER
    done = subprocess.run(["sh", "-c", runner, "froxlor-fleet", str(folder / "fleethost.py"), *args],
                          input=stdin, text=True, capture_output=True, timeout=60,
                          env=dict(os.environ, FROXLOR_FLEET_ROOT=str(root)))
    rows = [line.split("|") for line in (done.stderr + done.stdout).splitlines()
            if line.startswith("import time:") and "[us]" not in line]
    return done, {row[2].strip() for row in rows}


def test_status_and_confirm_load_neither_ufw_nor_typing(tmp_path: Path) -> None:
    """status, with nothing pending and with a pending change; confirm of that change,
    its revert timer alive (confirm stops it and removes the entry: the usual case)."""
    folder = tmp_path / "program"
    assert place(folder).returncode == 64  # placed; apply refused test_hostprogram.NOT_JSON
    root = tmp_path / "root"
    done, modules = imported(folder, root, "status")
    assert (done.returncode, done.stdout) == (0, "no pending reverts\n"), done.stderr
    assert "encodings" in modules  # the importtime lines were read
    assert not modules & HEAVY, sorted(modules & HEAVY)
    # a pending change whose timer is alive: a process in a session of its own, as
    # commit.py forks the timer
    entry = root / "var/lib/froxlor-fleet/pending" / TOKEN
    entry.mkdir(parents=True)
    (entry / "undo.json").write_text("{}\n")
    (entry / "deadline").write_text("%d\n" % (time.time() + 300))
    timer = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (entry / "timer").write_text(f"{timer.pid} {commit.proc_start(timer.pid)} {commit._boot_id()}\n")
        done, modules = imported(folder, root, "status")
        assert done.stdout.startswith(f"{TOKEN} armed deadline=") and " timer=alive " in done.stdout
        assert not modules & HEAVY, sorted(modules & HEAVY)
        done, modules = imported(folder, root, "confirm", TOKEN)
        assert (done.returncode, done.stdout) == (0, "confirmed\n"), done.stderr
        assert timer.wait(10) == -signal.SIGTERM and not entry.exists()
        assert not modules & HEAVY, sorted(modules & HEAVY)
    finally:
        timer.kill()
        timer.wait()
    done, modules = imported(folder, root, "confirm", TOKEN)
    assert done.returncode == commit.UNKNOWN_TOKEN and not modules & HEAVY, sorted(modules & HEAVY)


def test_apply_loads_ufw_but_not_typing(tmp_path: Path) -> None:
    """The step imports the transaction (and with it every host module) before it reads
    the request."""
    folder = tmp_path / "program"
    assert place(folder).returncode == 64  # placed; apply refused test_hostprogram.NOT_JSON
    done, modules = imported(folder, tmp_path / "root", "apply", stdin="not json")
    assert done.returncode == 64 and "froxlor-fleet: unreadable request: " in done.stdout
    assert "froxlor_fleet_host.ufw_apply" in modules and "froxlor_fleet_host.ufwmodel" in modules
    assert "typing" not in modules
