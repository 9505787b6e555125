"""An operator's first hour (issue 21): ``froxlor-fleet init``, the shipped example
fleet, colours that honour ``NO_COLOR``, plurals, path options, the version and its
changelog entry.

Commands run in a subprocess as a user runs them; pyinfra runs against fake hosts
(127.0.0.1 ports where a trap counts connections, see test_fleetcheck), so nothing ever
runs on this machine.
"""

from __future__ import annotations

import datetime
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from froxlor_fleet import __version__
from froxlor_fleet.audit.compare import FleetAudit, fleet_error
from froxlor_fleet.audit.report import to_text
from test_audit import db_fleet
from test_cli import Fleet
from test_fleetcheck import Trap, assert_went_on_to_connect

ROOT = Path(__file__).resolve().parent.parent
ESC = "\x1b["


def froxlor_fleet(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "froxlor_fleet", *args], cwd=cwd,
                          capture_output=True, text=True, env=environ, timeout=120)


# --- colour and NO_COLOR -----------------------------------------------------------------

def test_text_report_has_colour_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert ESC in to_text(db_fleet(), tty=True)
    assert ESC not in to_text(db_fleet(), tty=False)


@pytest.mark.parametrize("value", ["1", "yes", "0"])
def test_no_color_turns_colour_off_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                                      value: str) -> None:
    # https://no-color.org: present and not empty, whatever its value
    monkeypatch.setenv("NO_COLOR", value)
    text = to_text(db_fleet(), tty=True)
    assert ESC not in text
    assert "unreachable" in text


def test_an_empty_no_color_does_not_turn_colour_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "")
    assert ESC in to_text(db_fleet(), tty=True)


def _audit_on_a_terminal(fleet: Fleet, **env: str) -> str:
    """The audit's text report as a terminal gets it (stdout is a pty)."""
    import json

    (fleet.path / "fleet.json").write_text(json.dumps(fleet.hosts))
    controller, terminal = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environ.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "fakeconn")]),
                   CANNED_FLEET=str(fleet.path / "fleet.json"),
                   CANNED_FLEET_LOG=str(fleet.path / "commands.log"), TERM="xterm", **env)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "froxlor_fleet", "audit", "inventory.py"],
                                cwd=fleet.path, stdout=terminal, stderr=subprocess.PIPE,
                                env=environ)
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=120)
    finally:
        os.close(controller)
    return b"".join(chunks).decode()


def test_the_audit_command_colours_a_terminal_unless_no_color(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.hosts["web2"] = {"refuse": "no"}  # an unreachable host: red
    coloured = _audit_on_a_terminal(fleet)
    assert "froxlor-fleet audit: 2 hosts" in coloured and ESC in coloured
    plain = _audit_on_a_terminal(fleet, NO_COLOR="1")
    assert "froxlor-fleet audit: 2 hosts" in plain and ESC not in plain


# --- plurals -----------------------------------------------------------------------------

def test_the_summary_says_one_error_and_one_host() -> None:
    one_error = FleetAudit("inventory.py", ("nope",),
                           errors=[fleet_error("limit_unmatched", "--limit 'nope' matches no host")])
    first = to_text(one_error).splitlines()[0]
    assert first == "froxlor-fleet audit: 0 hosts, 0 ok, 0 drift, 0 unreachable, 1 error"
    one_host = FleetAudit("inventory.py", (), db_fleet().hosts[:1])
    assert to_text(one_host).splitlines()[0].startswith("froxlor-fleet audit: 1 host, ")
    two = FleetAudit("inventory.py", (), errors=[fleet_error("usage_error", "a"),
                                                 fleet_error("output_error", "b")])
    assert to_text(two).splitlines()[0].endswith(", 2 errors")


# --- path options ------------------------------------------------------------------------

def test_a_missing_config_file_is_an_error_not_ignored(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    res = fleet.audit("--config", "nothere.py", "--json")
    assert res.code == 2, res.out
    assert "nothere.py" in res.stderr and "does not exist" in res.stderr
    assert res.doc["findings"][0]["kind"] == "usage_error"
    assert fleet.audit().code == 0  # no --config: config.py if present, as pyinfra


def test_a_config_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    (tmp_path / "conf").mkdir()
    res = fleet.audit("--config", "conf")
    assert res.code == 2 and "is a directory" in res.stderr, res.out


def test_a_missing_group_data_folder_is_an_error(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    res = fleet.audit("--group-data", "nowhere", "--json")
    assert res.code == 2 and "nowhere" in res.stderr, res.out
    assert res.doc["findings"][0]["kind"] == "usage_error"


def test_path_arguments_are_typed_as_paths() -> None:
    import click

    from froxlor_fleet.audit.cli import audit_command
    params = {p.name: p for p in audit_command.params}
    for name in ("inventory", "config_file", "group_data", "ssh_key", "prometheus"):
        assert isinstance(params[name].type, click.Path), name


# --- version and changelog ---------------------------------------------------------------

def _changelog_versions() -> list[tuple[str, str | None]]:
    """(version, date or None) of each released version in CHANGELOG.md, newest first."""
    text = (ROOT / "CHANGELOG.md").read_text()
    found = []
    for heading in re.findall(r"^## (.+)$", text, re.M):
        match = re.fullmatch(r"\[?(\d+\.\d+\.\d+)\]?(?: [—-] (\d{4}-\d\d-\d\d))?", heading)
        if match:
            found.append((match[1], match[2]))
    return found


def test_the_newest_changelog_entry_is_this_version_and_dated() -> None:
    versions = _changelog_versions()
    assert versions, "no version headings in CHANGELOG.md"
    newest, date = versions[0]
    assert newest == __version__
    assert date is not None, f"## {newest} has no date"
    datetime.date.fromisoformat(date)
    numbers = [tuple(int(n) for n in v.split(".")) for v, _ in versions]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers)


def test_docs_show_this_version() -> None:
    shown = []
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        shown += [(doc.name, v) for v in re.findall(r"# froxlor-fleet (\d+\.\d+\.\d+)",
                                                     doc.read_text())]
        shown += [(doc.name, v) for v in re.findall(
            r'"tool": \{"name": "froxlor-fleet", "version": "([^"]+)"\}', doc.read_text())]
    assert shown and [s for s in shown if s[1] != __version__] == []


# --- froxlor-fleet init and examples/ ----------------------------------------------------

def _trap_below_the_passive_range() -> Trap:
    """A trap on a port the example's ftp hosts do not use for passive FTP (the
    validation refuses an SSH port inside 49152-65534 on them, rightly)."""
    tried = []
    while True:
        trap = Trap()
        if trap.port < 49152:
            for other in tried:
                other.close()
            return trap
        tried.append(trap)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_init_writes_a_fleet_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "fleet"
    res = froxlor_fleet("init", str(target), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    written = _files(target)
    assert {"inventory.py", "deploy.py", "group_data/all.py"} <= set(written)
    assert any(name.startswith("group_data/") and name != "group_data/all.py" for name in written)
    for name, data in written.items():
        assert name.endswith(".py") and data.decode().lstrip().startswith(("#", '"""')), name
        compile(data, name, "exec")
    assert "pyinfra inventory.py deploy.py --dry --diff" in res.stdout

    # a second run, and a run into a folder where one file exists: nothing is overwritten
    (target / "deploy.py").write_text("# mine\n")
    (target / "group_data" / "web_servers.py").unlink()
    res = froxlor_fleet("init", str(target), cwd=tmp_path)
    assert res.returncode != 0 and "deploy.py" in res.stderr and "Traceback" not in res.stderr
    assert (target / "deploy.py").read_text() == "# mine\n"
    assert not (target / "group_data" / "web_servers.py").exists()  # none written


def test_init_into_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = froxlor_fleet("init", "afile", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr


def test_examples_folder_is_what_init_writes(tmp_path: Path) -> None:
    examples = ROOT / "examples"
    assert not [p for p in examples.rglob("*") if p.is_symlink()]
    assert froxlor_fleet("init", str(tmp_path / "new"), cwd=tmp_path).returncode == 0
    shipped = {k: v for k, v in _files(examples).items() if k.endswith(".py")}
    assert shipped == _files(tmp_path / "new")


def _dry_run_against(trap, fleet: Path) -> subprocess.CompletedProcess:
    """``pyinfra inventory.py deploy.py --dry`` in ``fleet``, every host pointed at ``trap``."""
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "--dry",
         "--data", "ssh_hostname=127.0.0.1", "--port", str(trap.port)],
        cwd=fleet, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_init_output_passes_pyinfra_validation_and_goes_on_to_connect(tmp_path: Path) -> None:
    """The files as written: ``pyinfra inventory.py deploy.py --dry`` from their folder
    validates every host's data (check_fleet) and only then connects; the hosts are
    pointed at the trap, which speaks no SSH, so the run ends there."""
    assert froxlor_fleet("init", "fleet", cwd=tmp_path).returncode == 0
    trap = _trap_below_the_passive_range()
    try:
        res = _dry_run_against(trap, tmp_path / "fleet")
        out = res.stdout + res.stderr
        # (paramiko logs its own traceback for the trap, which speaks no SSH)
        assert "Traceback" not in out.split("Connecting to hosts", 1)[0], out
        assert "Connecting to hosts" in out, out
        assert_went_on_to_connect(res.returncode, out, trap)
    finally:
        trap.close()


def test_init_output_with_bad_data_is_stopped_before_connecting(tmp_path: Path) -> None:
    """The check at the end of the written inventory is live (not a comment)."""
    assert froxlor_fleet("init", "fleet", cwd=tmp_path).returncode == 0
    web = tmp_path / "fleet" / "group_data" / "web_servers.py"
    web.write_text(web.read_text() + '\nfroxlor_roles = ["web", "wbe"]\n')
    trap = _trap_below_the_passive_range()
    try:
        res = _dry_run_against(trap, tmp_path / "fleet")
        out = res.stdout + res.stderr
        assert res.returncode != 0 and trap.count == 0, out
        assert "'wbe': unknown role" in out, out
    finally:
        trap.close()
