"""remote/ftpapply.py run for real in this process on temporary trees, with stand-in
``proftpd``, ``systemctl`` and init scripts on PATH / under the host's root that record
what they saw (the lab tests prove the shell programs against the real daemons).

ProFTPd's check tries the candidate without touching the live fragment, in ProFTPd's
Include order; apply restores on a refused config or a failed restart and writes the
marker only after a successful restart; restore puts a backup back. pure-ftpd: the same
for Debian's wrapper files. The digests agree with the control side's."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from froxlor_fleet.operations import ftpplan
from froxlor_fleet.remote import ftpapply
from froxlor_fleet.remote.ftpapply import FtpError, Host

# `proftpd -t [-c FILE]`: reads the main file (default: $MAIN) and its Includes as
# ProFTPd does (a directory: every entry that is a file; a glob in the last component:
# no dot-files unless the pattern starts with one; byte order), logs what it read and
# what the live fragment ($FRAG) held at that moment, and refuses a config holding BAD
# the way ProFTPd 1.3.8 refuses an included file (exit 0, "fatal:" naming the file).
# Without -t (no init script: started again after a SIGTERM) it logs the start like the
# service stand-in and leaves a process whose pid is in the pidfile.
FAKE_PROFTPD = f"""#!{sys.executable}
import fnmatch, json, os, shlex, subprocess, sys
fake, frag = os.environ["FAKE"], os.environ["FRAG"]
def text(path):
    return open(path).read() if os.path.exists(path) else None
def log(name, entry):
    with open(os.path.join(fake, name), "a") as f:
        f.write(json.dumps(entry) + "\\n")
args = sys.argv[1:]
if "-t" not in args:
    log("restarts.log", {{"how": "proftpd", "unit": "proftpd", "loaded": [text(frag)],
                         "marker": text(os.environ["MARKER"]), "folder": None}})
    if os.path.exists(fake + "/down") or "CRASH" in (text(frag) or ""):
        sys.exit(1)
    p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    open(os.environ["ROOT"] + "/run/proftpd.pid", "w").write("%d\\n" % p.pid)
    sys.exit(0)
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
texts = [open(f).read() for f in files]
log("proftpd.log", {{"argv": args, "files": files, "texts": texts, "live": text(frag)}})
print("Checking syntax of configuration file")
for f, t in zip(files, texts):
    if "BAD" in t:
        print(" - fatal: BAD on line 1 of '%s'" % f)
"""

# `systemctl is-active --quiet UNIT | restart UNIT`, and an init script (`NAME restart`,
# its name is the service). A restart logs what the daemon reads then (ProFTPd: $FRAG;
# pure-ftpd: conf/PassivePortRange and ForcePassiveIP), the marker at that moment and
# the files in the folder the daemon reads; it fails (the daemon stays down) when
# $FAKE/down exists or what it reads holds CRASH; with $FAKE/dies it exits 0 but the
# daemon is gone a moment later (seen only by looking again). Running: $FAKE/active-UNIT (systemd),
# the pidfile holding $TEST_PID (init scripts).
FAKE_SERVICE = f"""#!{sys.executable}
import json, os, sys
fake, root = os.environ["FAKE"], os.environ["ROOT"]
def text(path):
    return open(path).read() if os.path.exists(path) else None
name = os.path.basename(sys.argv[0])
if name == "systemctl":
    how, verb, unit = "systemctl", sys.argv[1], sys.argv[-1]
else:
    how, verb, unit = "init", sys.argv[1], name
active = os.path.join(fake, "active-" + unit)
if verb == "is-active":
    sys.exit(0 if os.path.exists(active) else 3)
assert verb == "restart", sys.argv
if unit == "proftpd":
    reads, pidfile = [os.environ["FRAG"]], root + "/run/proftpd.pid"
else:
    conf = root + "/etc/pure-ftpd/conf"
    reads = [conf + "/PassivePortRange", conf + "/ForcePassiveIP"]
    pidfile = root + "/run/pure-ftpd/pure-ftpd.pid"
loaded = [text(f) for f in reads]
with open(os.path.join(fake, "restarts.log"), "a") as f:
    f.write(json.dumps({{"how": how, "unit": unit, "loaded": loaded, "marker": text(os.environ["MARKER"]),
                        "folder": sorted(os.listdir(os.path.dirname(reads[0])))}}) + "\\n")
if os.path.exists(fake + "/down") or any("CRASH" in (t or "") for t in loaded):
    for f in (active, pidfile):
        if os.path.exists(f):
            os.remove(f)
    print("Job for %s.service failed because the control process exited with error code." % unit,
          file=sys.stderr)
    sys.exit(1)
if os.path.exists(fake + "/dies"):
    for f in (active, pidfile):
        if os.path.exists(f):
            os.remove(f)
    sys.exit(0)
open(active, "w").close()
if how == "init":
    open(pidfile, "w").write(os.environ["TEST_PID"] + "\\n")
"""

OLD = "PassivePorts 50000 50100\n"
NEW = "PassivePorts 50000 50200\n"


@dataclass
class Tree:
    """A host: ProFTPd's files under ``etc`` (proftpd.conf beside conf.d), the rest under
    ``root`` (Host.root), the stand-ins' records in ``fake``."""

    tmp: Path
    frag: Path
    main: Path
    root: Path
    fake: Path
    marker: Path
    backup: Path
    work: Path

    @property
    def host(self) -> Host:
        return Host(root=str(self.root))

    def proftpd_config(self, text: str | None, include: str = "conf.d/", before: str = "") -> None:
        """proftpd.conf (``before``, then the Include of ``include``) and the fragment
        (``None``: none)."""
        self.main.write_text(f"ServerName x\n{before}Include {self.main.parent}/{include}\n")
        if text is not None:
            self.frag.write_text(text)

    def systemd(self, *active: str) -> None:
        """systemd runs the services; ``active``: the units that run."""
        (self.root / "run/systemd/system").mkdir(parents=True)
        for unit in active:
            (self.fake / f"active-{unit}").touch()

    def init_script(self, name: str) -> None:
        """A SysV init script for ``name`` and a pidfile saying it runs (this process)."""
        script = self.root / "etc/init.d" / name
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(FAKE_SERVICE)
        script.chmod(0o755)
        pidfile = self.root / ("run/proftpd.pid" if name == "proftpd" else "run/pure-ftpd/pure-ftpd.pid")
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{os.getpid()}\n")

    def restarts(self) -> list[dict[str, Any]]:
        return _records(self.fake / "restarts.log")

    def checks(self) -> list[dict[str, Any]]:
        return _records(self.fake / "proftpd.log")

    def leftovers(self) -> list[str]:
        """Temporary files left beside conf.d, beside the marker or in the work folder."""
        return sorted([p.name for p in self.main.parent.iterdir() if p.name.startswith(".")]
                      + [p.name for p in self.marker.parent.iterdir() if p.name.startswith(".")]
                      + [p.name for p in self.work.iterdir()])


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The waits after a restart, short (the stand-ins answer at once)."""
    monkeypatch.setattr(ftpapply, "PROFTPD_SETTLE", 0.0)
    monkeypatch.setattr(ftpapply, "PUREFTPD_SETTLE", 0.0)
    monkeypatch.setattr(ftpapply, "COME_BACK", 0.3)
    monkeypatch.setattr(ftpapply, "POLL", 0.02)
    monkeypatch.setattr(ftpapply, "TERM_WAIT", 0.5)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tree:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("proftpd", FAKE_PROFTPD), ("systemctl", FAKE_SERVICE)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    t = Tree(tmp=tmp_path, frag=tmp_path / "etc/proftpd/conf.d/frag.conf",
             main=tmp_path / "etc/proftpd/proftpd.conf", root=tmp_path / "root", fake=tmp_path / "fake",
             marker=tmp_path / "state/loaded", backup=tmp_path / "backup", work=tmp_path / "work")
    for d in (t.frag.parent, t.root, t.fake, t.marker.parent, t.work):
        d.mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for key, value in (("FAKE", t.fake), ("ROOT", t.root), ("FRAG", t.frag), ("MAIN", t.main),
                       ("MARKER", t.marker), ("TEST_PID", os.getpid())):
        monkeypatch.setenv(key, str(value))
    return t


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- digests: the markers' contents ------------------------------------------------
# Spelled out as the shell programs wrote them (sha256sum of the fragment's bytes; of
# "PassivePortRange R\n" [+ "ForcePassiveIP I\n"]): the markers already on the hosts
# must still match, or every host restarts its FTP daemon once.


@pytest.mark.parametrize("content", ["", OLD, "PassivePorts 1024 2048\nMasqueradeAddress ftp.example.org\n",
                                     "# \u00fcmlaut\n"])
def test_proftpd_digest_is_the_sha256_of_the_bytes(content: str) -> None:
    assert ftpapply.proftpd_digest(content) == hashlib.sha256(content.encode("utf-8")).hexdigest()
    # what the control side compares
    assert ftpapply.proftpd_digest(content) == ftpplan.fragment_digest(content)


@pytest.mark.parametrize(("ports", "ip", "text"), [
    ((49152, 65534), None, b"PassivePortRange 49152 65534\n"),
    ((50000, 50100), "192.0.2.7", b"PassivePortRange 50000 50100\nForcePassiveIP 192.0.2.7\n"),
    ((1024, 1024), "ftp.example.org", b"PassivePortRange 1024 1024\nForcePassiveIP ftp.example.org\n"),
])
def test_pureftpd_digest_is_the_sha256_of_the_option_lines(ports: tuple[int, int], ip: str | None,
                                                           text: bytes) -> None:
    assert ftpapply.pureftpd_digest(f"{ports[0]} {ports[1]}", ip) == hashlib.sha256(text).hexdigest()
    assert ftpapply.pureftpd_digest(f"{ports[0]} {ports[1]}", ip) == ftpplan.pureftpd_files_digest(
        ftpplan.pureftpd_files(ports, ip))


# --- ProFTPd: check ---------------------------------------------------------------------


def test_check_tries_the_candidate_without_touching_the_live_fragment(tree: Tree) -> None:
    """``proftpd -t`` reads a candidate main file in which the Include of conf.d is
    replaced by the files it reads, in ProFTPd's order, with the candidate in the
    fragment's place; meanwhile the live fragment holds the old text (a restart by cron
    or logrotate in that window loads the old range, which UFW still opens)."""
    tree.proftpd_config(OLD, before="IncludeOptions IgnoreTempFiles\n")
    conf_d = tree.frag.parent
    for name, text in {"10-a.conf": "A\n", "zz.conf": "Z\n", ".hidden": "H\n", "x.conf~": "TEMP\n",
                       "y.swp": "SWAP\n"}.items():
        (conf_d / name).write_text(text)
    (conf_d / "sub").mkdir()
    (conf_d / "broken").symlink_to(conf_d / "nowhere")
    before = sorted(p.name for p in conf_d.iterdir())
    ftpapply.proftpd_check(str(tree.frag), NEW, str(tree.work))
    [seen] = tree.checks()
    assert seen["live"] == OLD
    # the candidate main: the Include of conf.d became one quoted Include per file read
    assert seen["texts"][0] == "ServerName x\nIncludeOptions IgnoreTempFiles\n" + "".join(
        f'Include "{f}"\n' for f in seen["files"][1:])
    assert seen["texts"][1:] == ["H\n", "A\n", NEW, "Z\n"]
    assert [Path(f).name for f in seen["files"][1:]] == [".hidden", "10-a.conf", "frag.conf", "zz.conf"]
    assert str(tree.frag) not in seen["files"]
    assert tree.frag.read_text() == OLD
    assert sorted(p.name for p in conf_d.iterdir()) == before
    assert tree.leftovers() == []
    assert tree.restarts() == []


@pytest.mark.parametrize(("options", "reads_temp"), [
    ("", True),
    ("IncludeOptions IgnoreTempFiles\n", False),
    ("IncludeOptions IgnoreTempFiles\nIncludeOptions AllowSymlinks\n", True),  # the last one counts
    ("includeoptions ignoretempfiles\n", True),  # ProFTPd compares the option with strcmp
])
def test_check_leaves_temporary_files_out_only_under_ignore_temp_files(tree: Tree, options: str,
                                                                       reads_temp: bool) -> None:
    tree.proftpd_config(OLD, before=options)
    (tree.frag.parent / "old.conf~").write_text("TEMP\n")
    ftpapply.proftpd_check(str(tree.frag), NEW, str(tree.work))
    [seen] = tree.checks()
    assert ("TEMP\n" in seen["texts"]) is reads_temp
    assert NEW in seen["texts"]


def test_check_of_a_first_fragment_with_a_glob_include(tree: Tree) -> None:
    tree.proftpd_config(None, include="conf.d/*.conf")
    (tree.frag.parent / "99-froxlor-ratelimit.conf").write_text("R\n")
    (tree.frag.parent / ".dot.conf").write_text("DOT\n")
    (tree.frag.parent / "notes.txt").write_text("TXT\n")
    ftpapply.proftpd_check(str(tree.frag), NEW, str(tree.work))
    [seen] = tree.checks()
    assert seen["live"] is None
    assert seen["texts"][1:] == ["R\n", NEW]
    assert not tree.frag.exists()
    assert tree.leftovers() == []


def test_check_of_an_include_of_the_file_itself(tree: Tree) -> None:
    """A quoted, lower-case Include of the fragment's own path is swapped too; the
    Include of another folder stays as it is."""
    other = tree.tmp / "etc/other"
    other.mkdir()
    (other / "o.conf").write_text("O\n")
    tree.main.write_text(f'include "{tree.frag}"\nInclude {other}/\n')
    tree.frag.write_text(OLD)
    ftpapply.proftpd_check(str(tree.frag), NEW, str(tree.work))
    [seen] = tree.checks()
    assert seen["texts"][1:] == [NEW, "O\n"]
    assert seen["files"][2] == str(other / "o.conf")
    assert seen["live"] == OLD


def test_a_refused_candidate_is_reported_at_the_live_path(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    with pytest.raises(FtpError) as refused:
        ftpapply.proftpd_check(str(tree.frag), "BAD\n", str(tree.work))
    message = str(refused.value)
    assert message.startswith("proftpd -t rejects the new passive-port fragment; nothing was changed")
    assert f"fatal: BAD on line 1 of '{tree.frag}'" in message  # not the candidate's path
    assert str(tree.work) not in message and "Checking syntax" not in message
    [seen] = tree.checks()
    assert seen["live"] == OLD
    assert tree.frag.read_text() == OLD
    assert sorted(p.name for p in tree.frag.parent.iterdir()) == ["frag.conf"]
    assert tree.leftovers() == []


def test_check_refuses_when_proftpd_conf_does_not_include_the_fragment(tree: Tree) -> None:
    """A layout the candidate can't be swapped into (conf.d included from another file)
    fails before the firewall changes, instead of trying it live."""
    tree.proftpd_config(OLD, include="other.conf")
    (tree.main.parent / "other.conf").write_text(f"Include {tree.frag.parent}/\n")
    with pytest.raises(FtpError, match=r"no Include in .* reads .*nothing was changed"):
        ftpapply.proftpd_check(str(tree.frag), NEW, str(tree.work))
    assert tree.checks() == []
    assert tree.frag.read_text() == OLD
    assert tree.leftovers() == []


def test_check_refuses_a_file_it_cannot_name_in_an_include(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    (tree.frag.parent / 'a"b.conf').write_text("Q\n")
    with pytest.raises(FtpError, match=r'cannot name .*a"b\.conf in an Include'):
        ftpapply.proftpd_check(str(tree.frag), NEW, str(tree.work))
    assert tree.checks() == []
    assert tree.leftovers() == []


def test_check_without_proftpd_is_an_error_not_a_traceback(tree: Tree,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tree.proftpd_config(OLD)
    with pytest.raises(FtpError, match=r"cannot read .*proftpd\.conf"):
        ftpapply.proftpd_check(str(tree.tmp / "elsewhere/conf.d/f.conf"), NEW, str(tree.work))
    monkeypatch.setenv("PATH", str(tree.tmp / "nothing"))
    with pytest.raises(FtpError, match="proftpd is not installed"):
        ftpapply.proftpd_check(str(tree.frag), NEW, str(tree.work))
    assert tree.leftovers() == []


# --- ProFTPd: apply --------------------------------------------------------------------


def test_apply_writes_tests_restarts_then_writes_the_marker(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    tree.systemd("proftpd")
    tree.marker.write_text("before\n")
    said = ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
    assert said == "proftpd restarted"
    assert tree.frag.read_text() == NEW
    assert tree.marker.read_text() == sha(NEW) + "\n"
    [check] = tree.checks()
    assert "-c" not in check["argv"] and check["live"] == NEW  # the whole live configuration
    [restart] = tree.restarts()
    assert (restart["how"], restart["unit"], restart["loaded"]) == ("systemctl", "proftpd", [NEW])
    assert restart["marker"] == "before\n"  # written only after the restart
    assert restart["folder"] == ["frag.conf"]  # no temporary file in conf.d
    assert (tree.backup / "proftpd-fragment").read_text() == OLD
    assert not (tree.backup / "proftpd-fragment.absent").exists()
    assert tree.leftovers() == []


def test_a_refused_config_restores_the_previous_fragment_and_leaves_the_marker(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    tree.systemd("proftpd")
    tree.marker.write_text("before\n")
    with pytest.raises(FtpError) as refused:
        ftpapply.proftpd_apply(str(tree.frag), "BAD\n", str(tree.marker), str(tree.backup), tree.host)
    assert "proftpd -t rejected the configuration, previous fragment restored" in str(refused.value)
    assert f"fatal: BAD on line 1 of '{tree.frag}'" in str(refused.value)
    assert tree.frag.read_text() == OLD
    assert tree.marker.read_text() == "before\n"  # ProFTPd was never restarted
    assert tree.restarts() == []
    assert tree.leftovers() == []


def test_a_failed_restart_restores_and_restarts_on_the_previous_fragment(tree: Tree) -> None:
    """CRASH passes ``proftpd -t`` but ProFTPd dies on it (as with mod_ban and a SIGHUP):
    the previous fragment goes back and ProFTPd is restarted on it, although it stopped."""
    tree.proftpd_config(OLD)
    tree.systemd("proftpd")
    tree.marker.write_text(sha(OLD) + "\n")
    with pytest.raises(FtpError) as failed:
        ftpapply.proftpd_apply(str(tree.frag), "CRASH\n", str(tree.marker), str(tree.backup), tree.host)
    message = str(failed.value)
    assert "ProFTPd did not restart with the new fragment, previous fragment restored" in message
    assert "Job for proftpd.service failed" in message
    assert "either" not in message
    assert [r["loaded"] for r in tree.restarts()] == [["CRASH\n"], [OLD]]
    assert tree.frag.read_text() == OLD
    assert tree.marker.read_text() == sha(OLD) + "\n"  # it runs the previous one again
    assert (tree.fake / "active-proftpd").exists()
    assert tree.leftovers() == []


def test_when_proftpd_does_not_come_back_either_the_marker_goes(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    tree.systemd("proftpd")
    tree.marker.write_text(sha(OLD) + "\n")
    (tree.fake / "down").touch()
    with pytest.raises(FtpError, match="did not come back on the previous fragment either"):
        ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
    assert not tree.marker.exists()  # unknown what runs: the next run restarts it
    assert tree.frag.read_text() == OLD
    assert len(tree.restarts()) == 2


def test_a_stopped_proftpd_is_not_started(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    tree.systemd()
    said = ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
    assert said == "proftpd is not running; the fragment applies when it starts"
    assert tree.restarts() == []
    assert tree.frag.read_text() == NEW
    assert tree.marker.read_text() == sha(NEW) + "\n"


def test_apply_of_none_removes_the_fragment_and_the_marker(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    tree.systemd("proftpd")
    tree.marker.write_text(sha(OLD) + "\n")
    ftpapply.proftpd_apply(str(tree.frag), None, str(tree.marker), str(tree.backup), tree.host)
    assert not tree.frag.exists() and not tree.marker.exists()
    assert [r["loaded"] for r in tree.restarts()] == [[None]]
    assert (tree.backup / "proftpd-fragment").read_text() == OLD


def test_a_restart_by_its_init_script(tree: Tree) -> None:
    """No systemd: the init script restarts it and the pidfile must name a live process,
    also for the restart on the previous fragment after a failed one."""
    tree.proftpd_config(OLD)
    tree.init_script("proftpd")
    assert ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup),
                                  tree.host) == "proftpd restarted"
    assert tree.marker.read_text() == sha(NEW) + "\n"
    with pytest.raises(FtpError, match="previous fragment restored"):
        ftpapply.proftpd_apply(str(tree.frag), "CRASH\n", str(tree.marker), str(tree.backup), tree.host)
    assert [(r["how"], r["loaded"]) for r in tree.restarts()] == [
        ("init", [NEW]), ("init", ["CRASH\n"]), ("init", [NEW])]
    assert (tree.root / "run/proftpd.pid").read_text() == f"{os.getpid()}\n"
    assert tree.marker.read_text() == sha(NEW) + "\n"


def test_without_an_init_script_proftpd_is_stopped_and_started(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    old = subprocess.Popen(["sleep", "60"])
    pidfile = tree.root / "run/proftpd.pid"
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text(f"{old.pid}\n")
    try:
        said = ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
        assert old.wait(timeout=5) == -signal.SIGTERM
        assert said == "proftpd restarted"
        [restart] = tree.restarts()
        assert (restart["how"], restart["loaded"]) == ("proftpd", [NEW])
        assert int(pidfile.read_text()) != old.pid
        assert tree.marker.read_text() == sha(NEW) + "\n"
    finally:
        old.kill()
        new = int(pidfile.read_text())
        if new != old.pid:
            os.kill(new, signal.SIGKILL)


def test_without_systemd_or_a_live_pidfile_proftpd_is_not_running(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    pidfile = tree.root / "run/proftpd.pid"
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text("12x\n")  # not a process id
    said = ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
    assert said.startswith("proftpd is not running")
    assert tree.restarts() == []


# --- ProFTPd: restore ------------------------------------------------------------------


def test_restore_puts_the_saved_fragment_back(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    tree.frag.chmod(0o600)
    tree.systemd("proftpd")
    ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
    assert (tree.frag.stat().st_mode & 0o777) == 0o644
    said = ftpapply.proftpd_restore(str(tree.frag), str(tree.marker), str(tree.backup), tree.host)
    assert said == "previous fragment put back; proftpd restarted"
    assert tree.frag.read_text() == OLD
    assert (tree.frag.stat().st_mode & 0o777) == 0o600  # as `cp -p` kept it
    assert tree.marker.read_text() == sha(OLD) + "\n"
    assert [r["loaded"] for r in tree.restarts()] == [[NEW], [OLD]]
    assert tree.restarts()[1]["marker"] == sha(NEW) + "\n"
    assert tree.leftovers() == []


def test_restore_of_an_absent_fragment_removes_it_and_the_marker(tree: Tree) -> None:
    tree.proftpd_config(None)
    tree.systemd("proftpd")
    ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
    assert (tree.backup / "proftpd-fragment.absent").exists()
    assert not (tree.backup / "proftpd-fragment").exists()
    ftpapply.proftpd_restore(str(tree.frag), str(tree.marker), str(tree.backup), tree.host)
    assert not tree.frag.exists() and not tree.marker.exists()
    assert [r["loaded"] for r in tree.restarts()] == [[NEW], [None]]


def test_restore_without_a_backup_changes_nothing(tree: Tree) -> None:
    tree.proftpd_config(NEW)
    tree.systemd("proftpd")
    tree.backup.mkdir()
    with pytest.raises(FtpError, match="no backup"):
        ftpapply.proftpd_restore(str(tree.frag), str(tree.marker), str(tree.backup), tree.host)
    assert tree.frag.read_text() == NEW and tree.restarts() == []


def test_a_restore_proftpd_does_not_come_back_on_removes_the_marker(tree: Tree) -> None:
    tree.proftpd_config(OLD)
    tree.systemd("proftpd")
    ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
    (tree.fake / "down").touch()
    with pytest.raises(FtpError, match="did not come back"):
        ftpapply.proftpd_restore(str(tree.frag), str(tree.marker), str(tree.backup), tree.host)
    assert tree.frag.read_text() == OLD
    assert not tree.marker.exists()


# --- pure-ftpd ------------------------------------------------------------------------


def pure_host(tree: Tree, range_: str | None = "49152 65534") -> Path:
    """pure-ftpd-mysql with its init script, running; conf/PassivePortRange = ``range_``."""
    conf = tree.root / "etc/pure-ftpd/conf"
    conf.mkdir(parents=True)
    (conf / "MinUID").write_text("1000\n")  # froxlor's other options
    tree.init_script("pure-ftpd-mysql")
    if range_ is not None:
        (conf / "PassivePortRange").write_text(range_ + "\n")
    return conf


def test_a_pureftpd_restart_records_what_it_loaded(tree: Tree) -> None:
    conf = pure_host(tree)
    said = ftpapply.pureftpd_apply("50000 50100", "192.0.2.7", str(tree.marker), str(tree.backup), tree.host)
    assert said == "pure-ftpd restarted (pure-ftpd-mysql)"
    [restart] = tree.restarts()
    assert (restart["how"], restart["unit"]) == ("init", "pure-ftpd-mysql")
    assert restart["loaded"] == ["50000 50100\n", "192.0.2.7\n"]
    assert restart["marker"] is None  # written after the restart
    assert restart["folder"] == ["ForcePassiveIP", "MinUID", "PassivePortRange"]  # no temporary file
    wanted = ftpplan.pureftpd_files((50000, 50100), "192.0.2.7")
    assert tree.marker.read_text().strip() == ftpplan.pureftpd_files_digest(wanted)
    assert (conf / "ForcePassiveIP").read_text() == "192.0.2.7\n"
    assert sorted(p.name for p in conf.parent.iterdir()) == ["conf"]
    assert (tree.backup / "pureftpd-PassivePortRange").read_text() == "49152 65534\n"
    assert (tree.backup / "pureftpd-ForcePassiveIP.absent").exists()


def test_a_failed_pureftpd_restart_that_does_not_come_back_removes_the_marker(tree: Tree) -> None:
    conf = pure_host(tree)
    tree.marker.write_text("before\n")
    (tree.fake / "down").touch()
    with pytest.raises(FtpError) as failed:
        ftpapply.pureftpd_apply("50000 50100", None, str(tree.marker), str(tree.backup), tree.host)
    message = str(failed.value)
    assert "pure-ftpd did not come back with the new passive range (pure-ftpd-mysql), previous files " \
           "restored" in message
    assert "did not come back on the previous files either" in message
    assert not tree.marker.exists()  # unknown what runs: the next run restarts it
    assert (conf / "PassivePortRange").read_text() == "49152 65534\n"
    assert [r["loaded"][0] for r in tree.restarts()] == ["50000 50100\n", "49152 65534\n"]


def test_a_failed_pureftpd_restart_comes_back_on_the_previous_files(tree: Tree) -> None:
    conf = pure_host(tree)
    tree.marker.write_text("before\n")
    with pytest.raises(FtpError, match="previous files restored") as failed:
        ftpapply.pureftpd_apply("50000 50100", "CRASH", str(tree.marker), str(tree.backup), tree.host)
    assert "either" not in str(failed.value)
    assert tree.marker.read_text() == "before\n"
    assert not (conf / "ForcePassiveIP").exists()
    assert [r["loaded"] for r in tree.restarts()] == [["50000 50100\n", "CRASH\n"], ["49152 65534\n", None]]


def test_pureftpd_under_systemd(tree: Tree) -> None:
    pure_host(tree)
    tree.systemd("pure-ftpd-mysql")
    ftpapply.pureftpd_apply("50000 50100", None, str(tree.marker), str(tree.backup), tree.host)
    assert [(r["how"], r["unit"]) for r in tree.restarts()] == [("systemctl", "pure-ftpd-mysql")]
    (tree.fake / "active-pure-ftpd-mysql").unlink()
    said = ftpapply.pureftpd_apply("50000 50200", None, str(tree.marker), str(tree.backup), tree.host)
    assert said == "pure-ftpd is not running; the range applies when it starts"
    assert len(tree.restarts()) == 1
    assert tree.marker.read_text().strip() == ftpplan.pureftpd_files_digest(
        ftpplan.pureftpd_files((50000, 50200), None))


def test_pureftpd_restore_puts_the_previous_files_back(tree: Tree) -> None:
    conf = pure_host(tree, "49152 65534")
    ftpapply.pureftpd_apply("50000 50100", "192.0.2.7", str(tree.marker), str(tree.backup), tree.host)
    said = ftpapply.pureftpd_restore(str(tree.marker), str(tree.backup), tree.host)
    assert said == "pure-ftpd's previous files put back; pure-ftpd restarted (pure-ftpd-mysql)"
    assert (conf / "PassivePortRange").read_text() == "49152 65534\n"
    assert not (conf / "ForcePassiveIP").exists()
    assert tree.restarts()[-1]["loaded"] == ["49152 65534\n", None]
    assert tree.marker.read_text().strip() == ftpplan.pureftpd_files_digest(
        ftpplan.pureftpd_files((49152, 65534), None))


def test_pureftpd_restore_of_no_range_removes_the_marker(tree: Tree) -> None:
    conf = pure_host(tree, None)
    ftpapply.pureftpd_apply("50000 50100", None, str(tree.marker), str(tree.backup), tree.host)
    assert tree.marker.exists()
    ftpapply.pureftpd_restore(str(tree.marker), str(tree.backup), tree.host)
    assert not (conf / "PassivePortRange").exists()
    assert not tree.marker.exists()


@pytest.mark.parametrize(("files", "service"), [
    ([], None),
    (["etc/init.d/pure-ftpd"], "pure-ftpd"),
    (["etc/init.d/pure-ftpd", "etc/init.d/pure-ftpd-mysql"], "pure-ftpd-mysql"),
    (["lib/systemd/system/pure-ftpd.service", "etc/systemd/system/pure-ftpd-ldap.service"], "pure-ftpd-ldap"),
    (["lib/systemd/system/pure-ftpd-postgresql.service"], "pure-ftpd-postgresql"),
    (["etc/init.d/pure-ftpd-mysql:0644"], None),  # an init script must be executable
])
def test_pureftpd_service_prefers_froxlors_flavour(tmp_path: Path, files: list[str],
                                                   service: str | None) -> None:
    for spec in files:
        name, _, mode = spec.partition(":")
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        path.chmod(int(mode or "755", 8))
    assert ftpapply.pureftpd_service(Host(root=str(tmp_path))) == service


@pytest.mark.parametrize("daemon", ["proftpd", "pure-ftpd"])
def test_temporary_files_go_beside_the_folder_the_daemon_reads(tree: Tree, monkeypatch: pytest.MonkeyPatch,
                                                               daemon: str) -> None:
    """ProFTPd includes every file of conf.d and pure-ftpd's wrapper reads every file of
    conf/, temporary ones too: each new file is renamed into place from beside them."""
    renamed: list[tuple[str, str]] = []
    replace = os.replace

    def recording(src: Any, dst: Any) -> None:
        renamed.append((os.path.dirname(src), os.path.dirname(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", recording)
    if daemon == "proftpd":
        tree.proftpd_config(OLD)
        tree.systemd("proftpd")
        ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
        ftpapply.proftpd_restore(str(tree.frag), str(tree.marker), str(tree.backup), tree.host)
        folder = tree.frag.parent
    else:
        folder = pure_host(tree)
        ftpapply.pureftpd_apply("50000 50100", "192.0.2.7", str(tree.marker), str(tree.backup), tree.host)
        ftpapply.pureftpd_restore(str(tree.marker), str(tree.backup), tree.host)
    into = [src for src, dst in renamed if dst == str(folder)]
    assert into and set(into) == {str(folder.parent)}


def test_a_daemon_that_dies_after_its_restart_counts_as_failed(tree: Tree) -> None:
    """``systemctl restart`` / the init script exit 0 but the daemon is gone: systemd is
    asked again (ProFTPd), the pidfile looked at again (pure-ftpd)."""
    tree.proftpd_config(OLD)
    tree.systemd("proftpd")
    (tree.fake / "dies").touch()
    with pytest.raises(FtpError, match="previous fragment restored"):
        ftpapply.proftpd_apply(str(tree.frag), NEW, str(tree.marker), str(tree.backup), tree.host)
    assert tree.frag.read_text() == OLD


def test_a_pureftpd_that_dies_after_its_restart_counts_as_failed(tree: Tree) -> None:
    conf = pure_host(tree)
    (tree.fake / "dies").touch()
    with pytest.raises(FtpError, match="previous files restored"):
        ftpapply.pureftpd_apply("50000 50100", None, str(tree.marker), str(tree.backup), tree.host)
    assert (conf / "PassivePortRange").read_text() == "49152 65534\n"
