"""The host program's placement (``remote/place.py``, in the transaction's own command)
run for real in a temp folder: the files arrive intact and private, a copy in place stays
put (two runs placing at once must not pull it from under a running transaction), a
damaged one is replaced, and a transfer that does not match its sums is refused with
nothing placed or run. Then the transaction's command on the control side
(``_transaction``, pyinfra's host faked): what the operator sees while it happens."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pyinfra.api import FunctionCommand, StringCommand
from pyinfra.connectors.util import CommandOutput, OutputLine

from froxlor_fleet.facts import HostState
from froxlor_fleet.model import program
from froxlor_fleet.model.catalog import FRAGMENT_PATH, LOADED_MARKER, LOCK_WAIT, PUREFTPD_LOADED_MARKER
from froxlor_fleet.operations import ftpplan, hostprogram
from froxlor_fleet.remote import program as program_text
from froxlor_fleet.remote import transaction
from test_passive_switch import host_with

NOT_JSON = "not json"  # the request: fleethost.py apply refuses it (64), changing nothing


def place(folder: Path, files: str | None = None, sums: list[str] | None = None,
          request: str = NOT_JSON) -> subprocess.CompletedProcess:
    """``place_and_apply_command`` as the host runs it (``RUNNER``, ``python3 -I -S -c``),
    the transaction's root a temp folder."""
    lines = sums or [f"{digest}  {name}" for name, digest in sorted(program.sums().items())]
    env = dict(os.environ, FROXLOR_FLEET_ROOT=str(folder.parent / "root"))
    return subprocess.run(["sh", "-c", hostprogram.RUNNER, "froxlor-fleet", "-c",
                           program_text("place.py"), str(folder), *lines],
                          input=(files or hostprogram.program_stdin()) + request, text=True,
                          capture_output=True, timeout=60, env=env)


def test_the_program_is_placed_intact_and_private_then_runs(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "program" / program.version()
    done = place(folder)
    assert done.returncode == 64, done.stdout + done.stderr  # fleethost.py apply ran: NOT_JSON
    assert done.stdout == (f"froxlor-fleet: host program placed in {folder}\n"
                           "froxlor-fleet: unreadable request: Expecting value: line 1 column 1 (char 0)\n")
    assert done.stderr == ""
    for name, text in program.texts().items():
        assert (folder / name).read_text() == text
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in folder.glob("*.py")) == sorted(program.FILES)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert folder.parent.stat().st_mode & 0o777 == 0o700
    assert folder.parent.parent.stat().st_mode & 0o777 == 0o700
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".new")]


def test_a_copy_in_place_stays_and_a_damaged_one_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "program" / program.version()
    assert place(folder).returncode == 64
    inode = folder.stat().st_ino
    again = place(folder)
    assert again.returncode == 64 and "placed" not in again.stdout
    assert folder.stat().st_ino == inode  # kept: a transaction may run from it
    (folder / "commit.py").write_text("tampered\n")
    assert place(folder).returncode == 64
    assert (folder / "commit.py").read_text() == program.texts()["commit.py"]
    (folder / "extra.py").write_text("")  # a file the version does not have: placed anew
    assert "placed" in place(folder).stdout
    assert not (folder / "extra.py").exists()
    # a copy someone else could have written (the state fact says "unsafe"): placed anew,
    # not kept because its sums still match
    (folder / "commit.py").chmod(0o666)
    assert "placed" in place(folder).stdout
    assert (folder / "commit.py").stat().st_mode & 0o777 == 0o600
    folder.chmod(0o777)
    assert "placed" in place(folder).stdout
    assert folder.stat().st_mode & 0o777 == 0o700


def test_the_placed_program_imports_its_modules_as_the_host_runs_it(tmp_path: Path) -> None:
    """The placed files alone (no package around them), run as the host runs them
    (``RUNNER``: ``python3 -I -S``): fleethost.py makes its folder the package, and every
    module imports its siblings relatively (``status``: commit.py; ``apply``: the
    transaction, ufw_apply.py, ufwmodel.py, ftpapply.py, before the request is read)."""
    folder = tmp_path / "program" / program.version()
    assert place(folder).returncode == 64
    env = dict(os.environ, FROXLOR_FLEET_ROOT=str(tmp_path / "root"))

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", hostprogram.RUNNER, "froxlor-fleet",
                               str(folder / "fleethost.py"), *args],
                              input=stdin, text=True, capture_output=True, env=env, timeout=60)

    status = run("status")
    assert (status.returncode, status.stdout, status.stderr) == (0, "no pending reverts\n", "")
    applied = run("apply", stdin=NOT_JSON)
    assert applied.returncode == 64, applied.stdout + applied.stderr
    assert applied.stdout.startswith("froxlor-fleet: unreadable request: ") and applied.stderr == ""


def test_files_that_do_not_match_the_sums_are_refused_and_nothing_runs(tmp_path: Path) -> None:
    folder = tmp_path / "program" / program.version()
    wrong = [f"{hashlib.sha256(b'x').hexdigest()}  fleethost.py"]
    done = place(folder, sums=wrong)
    assert done.returncode == 65, done.stdout + done.stderr
    assert "do not match their sha256): nothing placed" in done.stdout
    assert "unreadable request" not in done.stdout  # fleethost.py did not run
    assert not folder.exists()
    texts = dict(program.texts(), **{"commit.py": "import os; os.system('id')\n"})
    done = place(folder, files=json.dumps(texts) + "\n")
    assert done.returncode == 65 and not folder.exists()
    done = place(folder, files="{not json\n")
    assert done.returncode == 65 and "arrived damaged" in done.stdout and not folder.exists()
    assert not folder.parent.exists()  # nothing made before the files were checked


def test_the_runner_finds_ufws_python() -> None:
    """``RUNNER`` reads the interpreter from ufw's #! line with shell builtins."""
    done = subprocess.run(["sh", "-c", hostprogram.RUNNER, "froxlor-fleet", "-c",
                           "import sys; print(sys.executable, sys.flags.isolated, sys.flags.no_site)"],
                          capture_output=True, text=True, timeout=60)
    ufw = next((p for p in ("/usr/sbin/ufw", "/sbin/ufw", "/usr/bin/ufw") if os.path.isfile(p)), None)
    want = "/usr/bin/python3"
    if ufw:
        first = Path(ufw).read_text().splitlines()[0].removeprefix("#!").strip().split()[0]
        want = first if "python" in first else want
    assert done.stdout.split() == [want, "1", "1"], done.stdout + done.stderr


def test_the_files_are_what_the_sums_name() -> None:
    files = json.loads(hostprogram.program_stdin())
    assert {n: hashlib.sha256(t.encode()).hexdigest() for n, t in files.items()} == program.sums()
    assert set(files) == set(program.FILES)
    assert hostprogram.program_stdin().count("\n") == 1  # one line: the request follows
    assert os.path.basename(program.folder()) == program.version()


# --- the transaction, control side: live lines (pyinfra shows a command's output only
# when it ends, so what the operator must see while it happens is said here) ------------

class FakeState:
    print_output = False

    def get_op_data_for_host(self, host: object, op_hash: str) -> SimpleNamespace:
        return SimpleNamespace(global_arguments={})


class FakeHost:
    """pyinfra's Host as ``_transaction`` uses it: what it logs and runs, in order.
    ``answer`` gives a command's (ok, output lines) for the request it got on stdin."""

    name = "web1"
    nested_executing_op_hash = None
    executing_op_hash = "op"

    def __init__(self, answer: Callable[[str], tuple[bool, list[str]]]) -> None:
        self.answer = answer
        self.events: list[tuple[str, object]] = []

    def log(self, message: str, log_func: Any = None) -> None:
        self.events.append(("log", message))

    def log_styled(self, message: str, log_func: Any = None, **styles: Any) -> None:
        self.events.append(("log", message))

    def run_shell_command(self, command: StringCommand, _stdin: str = "", print_output: bool = False,
                          **arguments: Any) -> tuple[bool, CommandOutput]:
        raw = command.get_raw_value()
        if raw == hostprogram.place_and_apply_command().get_raw_value():
            assert _stdin.startswith(hostprogram.program_stdin())  # the files, then the request
            _stdin = _stdin.removeprefix(hostprogram.program_stdin())
            self.events.append(("place", None))
        else:
            assert raw == hostprogram.run_command("apply").get_raw_value()
        self.events.append(("run", json.loads(_stdin)["lock"]["wait"]))
        ok, lines = self.answer(_stdin)
        return ok, CommandOutput([OutputLine("stdout", line) for line in lines])

    def runs(self) -> list[object]:
        return [wait for kind, wait in self.events if kind == "run"]

    def placed_before(self) -> list[bool]:
        """For each run: was the program placed in the same command?"""
        return [i > 0 and self.events[i - 1][0] == "place"
                for i, (kind, _) in enumerate(self.events) if kind == "run"]


def run_transaction(host: FakeHost, current: HostState, request: dict[str, Any]) -> bool:
    """The transaction command ``hostprogram.commands`` makes, run as pyinfra runs it."""
    command = hostprogram.commands(current, request)[-1]
    assert isinstance(command, FunctionCommand)
    return bool(command.function(FakeState(), host, *command.args, **command.kwargs))


def test_a_free_lock_costs_one_command() -> None:
    """No round trip for the case that is almost always true: the first command, told
    not to wait, runs the whole transaction, placing the program first on a host that
    does not have this version (one command either way)."""
    host = FakeHost(lambda stdin: (True, ["ufw: Rules updated"]))
    assert run_transaction(host, host_with(None), hostprogram.request(
        ufw={"wanted": []}, ftp=None, confirm_timeout=0))
    assert host.events == [("place", None), ("run", 0)]
    placed = host_with(None)
    placed.program, placed.program_unsafe = program.sums(), False
    host = FakeHost(lambda stdin: (True, ["ufw: Rules updated"]))
    assert run_transaction(host, placed, hostprogram.request(
        ufw={"wanted": []}, ftp=None, confirm_timeout=0))
    assert host.events == [("run", 0)]


def test_a_held_lock_is_said_at_once_then_waited_for() -> None:
    """The host program, told not to wait, finds the lock held and says BUSY: the
    operator reads the wait now (not when a 300 s wait is over), then the same request
    runs again with the real wait."""
    answers = [(False, [transaction.BUSY]), (True, ["ufw: Rules updated"])]
    host = FakeHost(lambda stdin: answers.pop(0))
    assert run_transaction(host, host_with(None), hostprogram.request(
        ufw={"wanted": []}, ftp=None, confirm_timeout=0))
    assert host.events == [
        ("place", None), ("run", 0),  # placed by then: the second command only runs it
        ("log", f"another run holds the lock on this host; waiting up to {LOCK_WAIT} s"),
        ("run", LOCK_WAIT)]


def test_a_run_that_gave_up_waiting_fails_with_the_programs_line() -> None:
    answers = [(False, [transaction.BUSY]),
               (False, [f"froxlor-fleet: gave up after {LOCK_WAIT} s waiting for /run/froxlor-fleet.lock"])]
    host = FakeHost(lambda stdin: answers.pop(0))
    assert not run_transaction(host, host_with(None), hostprogram.request(
        ufw={"wanted": []}, ftp=None, confirm_timeout=0))
    assert host.runs() == [0, LOCK_WAIT]
    assert host.events[-1] == ("log", f"gave up after {LOCK_WAIT} s waiting for /run/froxlor-fleet.lock")


def _switch(current: HostState, part: dict[str, object] | None) -> list[tuple[str, object]]:
    host = FakeHost(lambda stdin: (True, ["ftp: restarted"]))
    assert run_transaction(host, current, hostprogram.request(ufw=None, ftp=part, confirm_timeout=0))
    return host.events


def proftpd_part(content: str | None) -> dict[str, object]:
    """The FTP part of a request for ProFTPd (as ``ftpplan.fragment_part`` makes it)."""
    return {"daemon": "proftpd", "path": FRAGMENT_PATH, "content": content,
            "marker": LOADED_MARKER, "keep": []}


def test_a_passive_range_switch_is_said_right_before_the_transaction() -> None:
    running = host_with((50000, 50100), ftp_running={"proftpd": 812})
    part = proftpd_part(ftpplan.render_fragment((50200, 50300)))
    assert _switch(running, part) == [
        ("log", "switching ProFTPd's passive range 50000:50100 -> 50200:50300 (restart)"),
        ("place", None), ("run", 0)]
    stopped = host_with((50000, 50100))  # a stopped ProFTPd reads the file when it starts
    assert _switch(stopped, part)[0] == (
        "log", "switching ProFTPd's passive range 50000:50100 -> 50200:50300 (not running: no restart)")
    unset = host_with(None, ftp_running={"proftpd": 812})
    assert _switch(unset, part)[0] == (
        "log", "switching ProFTPd's passive range (none set) -> 50200:50300 (restart)")


def test_pure_ftpds_switch_is_said_too() -> None:
    current = host_with(None, ftp_running={"pureftpd": 900}, ftp_lines=[
        "@bin pure-ftpd-wrapper /usr/sbin/pure-ftpd-wrapper", "@pure PassivePortRange 50000 50100"])
    part = {"daemon": "pureftpd", "marker": PUREFTPD_LOADED_MARKER, "keep": [], "force_ip": None,
            "range": ftpplan.pureftpd_files((50200, 50300), None)["PassivePortRange"]}
    assert _switch(current, part)[0] == (
        "log", "switching pure-ftpd's passive range 50000:50100 -> 50200:50300 (restart)")


def test_no_switch_line_when_the_range_stays() -> None:
    """Only MasqueradeAddress moves, or the fragment goes: the range ProFTPd uses stays
    (what changes is --diff's to show), so nothing is said before the command."""
    current = host_with((50000, 50100), ftp_running={"proftpd": 812})
    masquerade = proftpd_part(ftpplan.render_fragment((50000, 50100), "192.0.2.7"))
    assert _switch(current, masquerade) == [("place", None), ("run", 0)]
    assert _switch(current, proftpd_part(None)) == [("place", None), ("run", 0)]
    assert _switch(current, None) == [("place", None), ("run", 0)]
