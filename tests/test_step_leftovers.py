"""remote/step.sh run for real on this machine (issue 22): the step's folder is made
beside the lock (here: a temporary folder, FROXLOR_FLEET_LOCK), handed to the step as
FROXLOR_FLEET_STEP_DIR for its temporary files, and removed on every way out; a relay
killed while its step runs leaves the folder to the step, and the next relay removes
it once the step is over, never while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from froxlor_fleet.steps import STEP_SCRIPT


def step(tmp: Path, *command: str, lock: str = "lock", **popen: object) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", STEP_SCRIPT, "froxlor-fleet", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                 "FROXLOR_FLEET_LOCK": str(tmp / lock)}, **popen)


def folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("froxlor-fleet.??????"))


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists()


def age(folder: Path, seconds: int = 120) -> None:
    old = time.time() - seconds
    os.utime(folder, (old, old))


def test_the_step_gets_a_root_only_folder_that_goes_with_it(tmp_path: Path) -> None:
    proc = step(tmp_path, "sh", "-c", 'echo "$FROXLOR_FLEET_STEP_DIR"; '
                'stat -c %a "$FROXLOR_FLEET_STEP_DIR"; touch "$FROXLOR_FLEET_STEP_DIR/x"; exit 3')
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    where, mode = out.split()
    assert Path(where).parent == tmp_path and mode == "700"
    assert folders(tmp_path) == []


def test_a_killed_relay_leaves_the_folder_to_its_step_and_the_next_one_cleans_it(
        tmp_path: Path) -> None:
    go, done = tmp_path / "go", tmp_path / "done"
    relay = step(tmp_path, "sh", "-c", f'touch "$FROXLOR_FLEET_STEP_DIR/tmpfile"; '
                 f'while [ ! -e {go} ]; do sleep 0.05; done; touch {done}',
                 start_new_session=True)
    try:
        [folder] = _one(tmp_path)
        wait_for(folder / "tmpfile")
        os.kill(relay.pid, signal.SIGTERM)  # an SSH session gone: the relay only
        relay.communicate(timeout=10)
        assert relay.returncode != 0
        assert folder.exists()  # the step still runs and writes there
        age(folder)
        # A step while the killed relay's step runs (another lock, or it would wait for
        # that step): its folder stays.
        assert step(tmp_path, "true", lock="lock2").wait(timeout=30) == 0
        assert folders(tmp_path) == [folder]
        go.touch()
        wait_for(done)
        deadline = time.monotonic() + 10
        while (folder / "rc").exists() is False and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        age(folder)
        # A new leftover of a relay that may still be starting (younger than a minute) stays.
        fresh = tmp_path / "froxlor-fleet.ABCDEF"
        fresh.mkdir()
        assert step(tmp_path, "true").wait(timeout=30) == 0
        assert folders(tmp_path) == [fresh]
    finally:
        go.touch()  # the step ends, pass or fail


def _one(tmp: Path) -> list[Path]:
    deadline = time.monotonic() + 10
    while not folders(tmp) and time.monotonic() < deadline:
        time.sleep(0.05)
    return folders(tmp)


def test_a_relay_killed_before_its_step_ran_removes_its_folder(tmp_path: Path) -> None:
    """A relay waiting on stdin (a request still arriving) dies with its folder."""
    relay = step(tmp_path, "--stdin", "true", stdin=subprocess.PIPE)
    [folder] = _one(tmp_path)
    time.sleep(0.3)
    os.kill(relay.pid, signal.SIGTERM)
    relay.communicate(timeout=10)
    assert not folder.exists()
