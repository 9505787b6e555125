"""remote/fragment_apply.sh run for real, with a stand-in ``proftpd`` on PATH (fast
feedback; the lab tests prove it against the real ProFTPd): check tries the candidate
without touching the live fragment, apply restores on a refused config, and the UFW half
of a range change follows the outcome (the runner here only records which request it
got)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from froxlor_fleet.remote import program

# A stand-in for `proftpd -t [-c FILE]`: reads the main file (default: $MAIN) and its
# Includes as ProFTPd does (a directory: every entry but ./.. that is a file, a glob in
# the last component: no dot-files, both in byte order), logs what it read and what the
# live fragment held at that moment, and refuses a config holding BAD the way ProFTPd
# 1.3.8 refuses an included file (exit 0, "fatal:" in the text). $SLOW: sleep first.
FAKE_PROFTPD = f"""#!{sys.executable}
import fnmatch, json, os, shlex, sys, time
if os.environ.get("SLOW"):
    open(os.environ["SLOW"], "w").close()
    time.sleep(30)
args = sys.argv[1:]
main = args[args.index("-c") + 1] if "-c" in args else os.environ["MAIN"]
files = []
def read(path):
    files.append(path)
    for line in open(path).read().splitlines():
        words = shlex.split(line) if line.strip() and not line.lstrip().startswith("#") else []
        if len(words) > 1 and words[0].lower() == "include":
            target = words[1]
            if os.path.isdir(target):
                names = os.listdir(target)
            else:
                target, pattern = os.path.split(target)
                names = [n for n in os.listdir(target) if fnmatch.fnmatchcase(n, pattern)
                         and not (n.startswith(".") and not pattern.startswith("."))]
            for name in sorted(os.path.join(target, n).encode() for n in names):
                if os.path.isfile(name):
                    read(name.decode())
read(main)
frag = os.environ["FRAG"]
live = open(frag).read() if os.path.exists(frag) else None
texts = [open(f).read() for f in files]
with open(os.environ["PROFTPD_LOG"], "a") as log:
    log.write(json.dumps({{"files": files, "texts": texts, "live": live}}) + "\\n")
if any("BAD" in t for t in texts):
    print("Checking syntax"); print(" - fatal: BAD on line 1")
"""
# Records the request it was handed: $1 names it in the JSON object on stdin.
RECORDING_RUNNER = ('v=$(sed -n "s/.*\\"$1\\": \\"\\([^\\"]*\\)\\".*/\\1/p"); '
                    'printf "%s\\n" "$v" >> "$UFW_LOG"; [ "$v" != fail ]')


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "proftpd").write_text(FAKE_PROFTPD)
    (bin_dir / "proftpd").chmod(0o755)
    for d in ("step", "tmpdir"):
        (tmp / d).mkdir(exist_ok=True)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FRAG=str(tmp / "conf.d/frag.conf"),
                MAIN=str(tmp / "proftpd.conf"), UFW_LOG=str(tmp / "ufw.log"),
                PROFTPD_LOG=str(tmp / "proftpd.log"), FROXLOR_FLEET_STEP_DIR=str(tmp / "step"),
                TMPDIR=str(tmp / "tmpdir"), **extra)


def run(tmp: Path, *args: str, switch: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    """fragment_apply.sh with ``args``; with ``switch`` (the two UFW requests) inside
    remote/switch_step.sh, as a range change runs it."""
    env = env_for(tmp)
    step = [program("fragment_apply.sh"), *args]
    if switch is not None:
        step = [program("switch_step.sh"), "froxlor-fleet", RECORDING_RUNNER, "program", *step]
        requests = json.dumps({"if_switched": switch[0], "if_not": switch[1]})
        return subprocess.run(["sh", "-c", *step], input=requests, capture_output=True,
                              text=True, env=env)
    return subprocess.run(["sh", "-c", step[0], "froxlor-fleet", *step[1:]],
                          capture_output=True, text=True, env=env)


def setup(tmp: Path, text: str | None, include: str = "conf.d/", before: str = "") -> Path:
    """ProFTPd's main file (``before``, then the Include of conf.d) and conf.d with the
    fragment (``None``: none)."""
    (tmp / "conf.d").mkdir()
    (tmp / "proftpd.conf").write_text(f"ServerName x\n{before}Include {tmp}/{include}\n")
    frag = tmp / "conf.d/frag.conf"
    if text is not None:
        frag.write_text(text)
    return frag


def proftpd_log(tmp: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp / "proftpd.log").read_text().splitlines()]


def leftovers(tmp: Path) -> list[str]:
    """Anything the script left in the step's folder, in $TMPDIR or beside conf.d."""
    return sorted([p.name for p in (tmp / "step").iterdir()] + [p.name for p in (tmp / "tmpdir").iterdir()]
                  + [p.name for p in tmp.iterdir() if p.name.startswith(".")])


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


# --- issue 22: check never puts the candidate at the live path; no leftovers --------


def test_check_tries_the_candidate_without_touching_the_live_fragment(tmp_path: Path) -> None:
    """``proftpd -t`` reads a candidate main file in which the Include of conf.d is
    replaced by the files it matches, in ProFTPd's order, with the candidate in the
    fragment's place; meanwhile the live fragment holds the old text (a restart by cron
    or logrotate in that window loads the old range, which UFW still opens)."""
    frag = setup(tmp_path, "PassivePorts 50000 50100\n", before="IncludeOptions IgnoreTempFiles\n")
    conf_d = tmp_path / "conf.d"
    for name, text in {"10-a.conf": "A\n", "zz.conf": "Z\n", ".hidden": "H\n",
                       "x.conf~": "TEMP\n"}.items():
        (conf_d / name).write_text(text)
    (conf_d / "sub").mkdir()
    res = run(tmp_path, "check", str(frag), "PassivePorts 50000 50200\n")
    assert res.returncode == 0, res.stderr
    [seen] = proftpd_log(tmp_path)
    assert seen["live"] == "PassivePorts 50000 50100\n"
    assert seen["texts"][1:] == ["H\n", "A\n", "PassivePorts 50000 50200\n", "Z\n"]
    assert [Path(f).name for f in seen["files"][1:]] == [".hidden", "10-a.conf", "frag.conf", "zz.conf"]
    assert str(conf_d / "frag.conf") not in seen["files"]
    assert frag.read_text() == "PassivePorts 50000 50100\n"
    assert leftovers(tmp_path) == []


def test_check_of_a_first_fragment_with_a_glob_include(tmp_path: Path) -> None:
    frag = setup(tmp_path, None, include="conf.d/*.conf")
    (tmp_path / "conf.d/99-froxlor-ratelimit.conf").write_text("R\n")
    (tmp_path / "conf.d/.dot.conf").write_text("DOT\n")
    (tmp_path / "conf.d/notes.txt").write_text("TXT\n")
    res = run(tmp_path, "check", str(frag), "PassivePorts 50000 50200\n")
    assert res.returncode == 0, res.stderr
    [seen] = proftpd_log(tmp_path)
    assert seen["live"] is None
    assert seen["texts"][1:] == ["R\n", "PassivePorts 50000 50200\n"]
    assert not frag.exists()
    assert leftovers(tmp_path) == []


def test_a_refused_candidate_is_reported_at_the_live_path(tmp_path: Path) -> None:
    frag = setup(tmp_path, "PassivePorts 50000 50100\n")
    res = run(tmp_path, "check", str(frag), "BAD\n")
    assert res.returncode == 1
    assert "fatal: BAD" in res.stderr
    [seen] = proftpd_log(tmp_path)
    assert seen["live"] == "PassivePorts 50000 50100\n"
    assert leftovers(tmp_path) == []


def test_check_refuses_when_proftpd_conf_does_not_include_the_fragment(tmp_path: Path) -> None:
    """A layout the candidate can't be swapped into (conf.d included from another file)
    fails the host before its firewall changes, instead of trying it live."""
    frag = setup(tmp_path, "PassivePorts 50000 50100\n", include="other.conf")
    (tmp_path / "other.conf").write_text(f"Include {tmp_path}/conf.d/\n")
    res = run(tmp_path, "check", str(frag), "PassivePorts 50000 50200\n")
    assert res.returncode == 1
    assert "no Include in" in res.stderr and "nothing was changed" in res.stderr
    assert not (tmp_path / "proftpd.log").exists()
    assert frag.read_text() == "PassivePorts 50000 50100\n"
    assert leftovers(tmp_path) == []


def test_a_killed_check_leaves_the_live_fragment_and_no_temporary_files(tmp_path: Path) -> None:
    frag = setup(tmp_path, "PassivePorts 50000 50100\n")
    started = tmp_path / "started"
    proc = subprocess.Popen(["sh", "-c", program("fragment_apply.sh"), "froxlor-fleet", "check",
                             str(frag), "PassivePorts 50000 50200\n"],
                            env=env_for(tmp_path, SLOW=str(started)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 10
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    assert frag.read_text() == "PassivePorts 50000 50100\n"  # while proftpd -t runs
    os.kill(proc.pid, signal.SIGTERM)  # the script; its trap ends it
    os.killpg(proc.pid, signal.SIGTERM)  # and the stand-in
    proc.communicate(timeout=10)
    assert frag.read_text() == "PassivePorts 50000 50100\n"
    assert leftovers(tmp_path) == []


def test_apply_keeps_its_backup_in_the_steps_folder_and_removes_it(tmp_path: Path) -> None:
    frag = setup(tmp_path, "PassivePorts 50000 50100\n")
    ok = run(tmp_path, "apply", str(frag), "PassivePorts 50000 50200\n", str(tmp_path / "m"))
    assert ok.returncode == 0, ok.stderr
    bad = run(tmp_path, "apply", str(frag), "BAD\n", str(tmp_path / "m"))
    assert bad.returncode == 1
    assert frag.read_text() == "PassivePorts 50000 50200\n"
    assert leftovers(tmp_path) == []
