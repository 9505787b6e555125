"""remote/fragment_apply.sh run for real, with a stand-in ``proftpd -t`` on PATH (fast
feedback; the lab tests prove it against the real ProFTPd): check puts the file back,
apply restores on a refused config, and the UFW half of a range change follows the
outcome (the runner here only records which request it got)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from froxlor_fleet.remote import program

# A stand-in for `proftpd -t`: a config holding BAD is refused the way ProFTPd 1.3.8
# refuses an included file (exit 0, "fatal:" in the text).
FAKE_PROFTPD = """#!/bin/sh
if grep -qs BAD "$FRAG"; then echo "Checking syntax"; echo " - fatal: BAD on line 1"; fi
exit 0
"""
# Records the request it was handed: $1 names it in the JSON object on stdin.
RECORDING_RUNNER = ('v=$(sed -n "s/.*\\"$1\\": \\"\\([^\\"]*\\)\\".*/\\1/p"); '
                    'printf "%s\\n" "$v" >> "$UFW_LOG"; [ "$v" != fail ]')


def run(tmp: Path, *args: str, switch: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    """fragment_apply.sh with ``args``; with ``switch`` (the two UFW requests) inside
    remote/switch_step.sh, as a range change runs it."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "proftpd").write_text(FAKE_PROFTPD)
    (bin_dir / "proftpd").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FRAG=str(tmp / "conf.d/frag.conf"),
               UFW_LOG=str(tmp / "ufw.log"))
    step = [program("fragment_apply.sh"), *args]
    if switch is not None:
        step = [program("switch_step.sh"), "froxlor-fleet", RECORDING_RUNNER, "program", *step]
        requests = json.dumps({"if_switched": switch[0], "if_not": switch[1]})
        return subprocess.run(["sh", "-c", *step], input=requests, capture_output=True,
                              text=True, env=env)
    return subprocess.run(["sh", "-c", step[0], "froxlor-fleet", *step[1:]],
                          capture_output=True, text=True, env=env)


def setup(tmp: Path, text: str | None) -> Path:
    (tmp / "conf.d").mkdir()
    frag = tmp / "conf.d/frag.conf"
    if text is not None:
        frag.write_text(text)
    return frag


def test_check_tries_the_candidate_and_puts_the_previous_file_back(tmp_path: Path) -> None:
    frag = setup(tmp_path, "PassivePorts 50000 50100\n")
    ok = run(tmp_path, "check", str(frag), "PassivePorts 50000 50200\n")
    assert ok.returncode == 0, ok.stderr
    assert frag.read_text() == "PassivePorts 50000 50100\n"
    bad = run(tmp_path, "check", str(frag), "BAD\n")
    assert bad.returncode == 1
    assert "proftpd -t rejects the new passive-port fragment; nothing was changed" in bad.stderr
    assert "fatal: BAD" in bad.stderr
    assert frag.read_text() == "PassivePorts 50000 50100\n"
    assert sorted(p.name for p in (tmp_path / "conf.d").iterdir()) == ["frag.conf"]


def test_check_without_a_previous_fragment_leaves_none(tmp_path: Path) -> None:
    frag = setup(tmp_path, None)
    assert run(tmp_path, "check", str(frag), "PassivePorts 50000 50200\n").returncode == 0
    assert not frag.exists()


def test_apply_switches_then_closes_the_old_range(tmp_path: Path) -> None:
    frag = setup(tmp_path, "PassivePorts 50000 50100\n")
    marker = tmp_path / "state/loaded"
    res = run(tmp_path, "apply", str(frag), "PassivePorts 50000 50200\n", str(marker),
              switch=("close-old", "close-new"))
    assert res.returncode == 0, res.stderr
    assert frag.read_text() == "PassivePorts 50000 50200\n"
    assert marker.read_text().strip() == hashlib.sha256(b"PassivePorts 50000 50200\n").hexdigest()
    assert (tmp_path / "ufw.log").read_text() == "close-old\n"
    assert "UFW closed the previous passive range" in res.stdout


def test_a_refused_switch_restores_the_fragment_and_closes_the_new_range(tmp_path: Path) -> None:
    frag = setup(tmp_path, "PassivePorts 50000 50100\n")
    marker = tmp_path / "loaded"
    marker.write_text("before\n")
    res = run(tmp_path, "apply", str(frag), "BAD\n", str(marker), switch=("close-old", "close-new"))
    assert res.returncode == 1
    assert "proftpd -t rejected the configuration, previous fragment restored" in res.stderr
    assert "UFW is back on the previous passive range" in res.stderr
    assert frag.read_text() == "PassivePorts 50000 50100\n"
    assert marker.read_text() == "before\n"  # ProFTPd was never reloaded
    assert (tmp_path / "ufw.log").read_text() == "close-new\n"


def test_ufw_failing_after_the_switch_fails_the_host(tmp_path: Path) -> None:
    frag = setup(tmp_path, "PassivePorts 50000 50100\n")
    res = run(tmp_path, "apply", str(frag), "PassivePorts 50000 50200\n", str(tmp_path / "m"),
              switch=("fail", "close-new"))
    assert res.returncode == 1
    assert "UFW could not close the previous one" in res.stderr


def test_apply_without_a_range_change_touches_no_ufw(tmp_path: Path) -> None:
    frag = setup(tmp_path, None)
    res = run(tmp_path, "apply", str(frag), "PassivePorts 50000 50200\n", str(tmp_path / "m"))
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "ufw.log").exists()
    assert frag.read_text() == "PassivePorts 50000 50200\n"
