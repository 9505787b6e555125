"""Commit-confirmed changes, control side: confirm.py against a throwaway loopback sshd,
confirming a change armed by the real host program (``remote/commit.py``, its own tests
in test_commit.py) in a temp tree (FROXLOR_FLEET_ROOT).

Never touches this machine's firewall, /etc/ufw, /var/lib/froxlor-fleet or /run: every
path is below a temp dir; the sshd runs as root only inside a private mount namespace
(its own /run) and is killed by its PID.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
from pyinfra.api import Config, Inventory, State, StringCommand

from froxlor_fleet.model.validation import confirm_timeout
from froxlor_fleet.operations import confirm, hostprogram
from froxlor_fleet.remote import commit, fleethost

IN_CI = os.environ.get("CI") == "true"
TOKEN = "t0k3n-abcdef12"


def test_tokens() -> None:
    tokens = {confirm.new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(confirm.TOKEN_RE.fullmatch(t) for t in tokens)
    with pytest.raises(ValueError):
        confirm.check_token("bad token")
    raw = hostprogram.run_command("confirm", TOKEN).get_raw_value()
    assert raw.startswith("sh -c '") and raw.endswith(f"/fleethost.py confirm {TOKEN}")


def test_run_arguments_come_from_the_executing_operation() -> None:
    class OpData:
        global_arguments: ClassVar[dict[str, object]] = {
            "_sudo": True, "_sudo_user": "admin", "_timeout": 5, "_env": {"A": "1"},
            "_ignore_errors": False}

    class FakeState:
        def get_op_data_for_host(self, host, op_hash):
            assert op_hash == "op1"
            return OpData()

    class FakeHost:
        nested_executing_op_hash = None
        executing_op_hash = "op1"

    assert confirm.run_arguments(FakeState(), FakeHost()) == {  # type: ignore[arg-type]
        "_sudo": True, "_sudo_user": "admin", "_env": {"A": "1"}}

    # Outside an operation: host data, then config.
    inventory = Inventory(([("h", {"_sudo": True, "_sudo_user": "ops"})], {}))
    state = State(inventory, Config())
    arguments = confirm.run_arguments(state, inventory.get_host("h"))
    assert arguments["_sudo"] is True and arguments["_sudo_user"] == "ops"
    assert set(arguments) <= set(confirm.RUN_AS_KEYS)


class _LogHost:
    def __init__(self):
        self.lines: list[tuple[str, dict]] = []

    def log_styled(self, message, **kwargs):
        self.lines.append((message, kwargs))


def test_confirm_step_messages(monkeypatch) -> None:
    deadline = time.time() + 60
    at = time.strftime("%H:%M:%S", time.localtime(deadline))
    command = hostprogram.run_command("confirm", TOKEN)
    cases = [
        (confirm.FreshResult(True, 0, "confirmed\n"), True, None),
        (confirm.FreshResult(False, None, "Could not connect (timed out)"), False,
         "could not open a new SSH connection after the change; the host restores its previous "
         f"firewall at {at} (Could not connect (timed out))"),
        (confirm.FreshResult(True, 2, "froxlor-fleet: too late: x reverted\n"), False,
         "a new SSH connection worked but the confirmation came too late; the host restored its "
         "previous firewall (exit status 2: froxlor-fleet: too late: x reverted)"),
        (confirm.FreshResult(True, 1, "sudo: a password is required\n"), False,
         "could not confirm the change over a new SSH connection; the host restores its previous "
         f"firewall at {at} (exit status 1: sudo: a password is required)"),
    ]
    for result, ok, message in cases:
        seen = []
        host = _LogHost()
        def fake_run(state, host_, command, timeout, result=result, seen=seen, host=host):
            seen.append((command, timeout, list(host.lines)))
            return result
        monkeypatch.setattr(confirm, "fresh_run", fake_run)
        assert confirm.confirm_now(None, host, command, deadline) is ok  # type: ignore[arg-type]
        said = [m for m, _ in host.lines]
        # live: the operator sees the confirmation start before it runs (up to 60 s)
        assert said[0] == ("commit-confirm: confirming the UFW change over a new SSH "
                           f"connection; unconfirmed, the host restores its previous one at {at}")
        if ok:
            assert len(said) == 2 and re.fullmatch(
                r"commit-confirm: confirmed over a new SSH connection in \d+\.\d s", said[1])
        else:
            assert said[1:] == [message]
        (seen_command, timeout, before), = seen
        assert [m for m, _ in before] == said[:1]
        assert command is seen_command
        assert 55 < timeout < 60


# --- a real loopback sshd ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    binary = shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/sbin/sshd") if os.path.exists(p)), None)
    if not binary or not shutil.which("ssh-keygen"):
        if IN_CI:
            pytest.fail("sshd/ssh-keygen missing in CI")
        pytest.skip("sshd not installed")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):  # generated now, never committed
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "ssh_config").write_text("")  # no ~/.ssh/config influence
    port = _free_port()
    root = os.geteuid() == 0
    (d / "sshd_config").write_text(f"""
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin {"prohibit-password" if root else "no"}
UsePAM no
StrictModes no
PidFile none
LogLevel ERROR
""")
    argv = [binary, "-D", "-e", "-f", str(d / "sshd_config")]
    if root:
        # A private mount namespace: sshd as root wants /run/sshd (a private /run instead
        # of touching ours), and root logs in with /bin/sh there, because bash reads this
        # machine's root ~/.bashrc for sshd commands (it may run e.g. `pyenv rehash`, whose
        # lock a killed session leaves behind, stalling every later login).
        (d / "passwd").write_text("".join(
            (":".join(line.split(":")[:6] + ["/bin/sh"]) if line.startswith("root:") else line)
            + "\n" for line in Path("/etc/passwd").read_text().splitlines()))
        setup = f'mount --bind {d}/passwd /etc/passwd && '
        if not os.path.isdir("/run/sshd"):
            setup += 'mount -t tmpfs -o mode=0755 froxlor-fleet-test /run && mkdir /run/sshd && '
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                setup + 'exec "$@"', "sh", *argv]
    with open(d / "sshd.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            ends = time.monotonic() + 10
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > ends:
                        pytest.fail(f"sshd did not listen: {(d / 'sshd.log').read_text()}")
                    time.sleep(0.1)
            host_key = (d / "host_key.pub").read_text().split()
            (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
            yield {"port": port, "dir": d, "user": "root" if root else os.environ.get("USER") or
                   __import__("getpass").getuser()}
        finally:
            proc.terminate()  # by its PID
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _ssh_host(sshd, **data):
    d = sshd["dir"]
    host_data = {
        "ssh_hostname": "127.0.0.1", "ssh_port": sshd["port"], "ssh_user": sshd["user"],
        "ssh_key": str(d / "client_key"), "ssh_known_hosts_file": str(d / "known_hosts"),
        "ssh_strict_host_key_checking": "yes", "ssh_config_file": str(d / "ssh_config"),
        **data,
    }
    inventory = Inventory(([("loopback", host_data)], {}))
    state = State(inventory, Config(CONNECT_TIMEOUT=5))
    return state, inventory.get_host("loopback")


def test_fresh_connection_check_opens_a_new_connection(sshd) -> None:
    state, host = _ssh_host(sshd)
    host.connect(raise_exceptions=True)
    try:
        client = host.connector.client
        ok, output = host.run_shell_command(StringCommand("echo", "$SSH_CONNECTION"))
        assert ok
        own = output.stdout.split()

        ok, text = confirm.fresh_connection_check(state, host, 'echo "$SSH_CONNECTION"; id -u', 10)
        assert ok, text
        fresh, uid = text.splitlines()
        fresh = fresh.split()
        assert fresh[0] == own[0] == "127.0.0.1" and fresh[3] == own[3] == str(sshd["port"])
        assert fresh[1] != own[1]  # another client port: a new TCP connection
        assert uid == str(os.geteuid())

        # The host's own connection is untouched and still works.
        assert host.connector.client is client and client.get_transport().is_active()
        ok, output = host.run_shell_command(StringCommand("echo", "$SSH_CONNECTION"))
        assert ok and output.stdout.split() == own
    finally:
        host.disconnect()


def test_fresh_connection_check_reports_failures_in_one_line(sshd) -> None:
    state, host = _ssh_host(sshd)
    ok, reason = confirm.fresh_connection_check(state, host, "echo out; echo last >&2; exit 4", 10)
    assert (ok, reason) == (False, "exit status 4: last")

    state, host = _ssh_host(sshd, ssh_port=_free_port())  # nothing listens there
    started = time.monotonic()
    ok, reason = confirm.fresh_connection_check(state, host, "true", 10)
    assert not ok and "\n" not in reason and "Connection refused" in reason, reason
    assert time.monotonic() - started < 5

    state, host = _ssh_host(sshd, ssh_key=str(sshd["dir"] / "host_key"))  # not authorized
    ok, reason = confirm.fresh_connection_check(state, host, "true", 10)
    assert not ok and "\n" not in reason and "Authentication" in reason, reason


@pytest.mark.skipif(not shutil.which("sudo"), reason="sudo not installed")
def test_fresh_connection_runs_with_the_hosts_sudo(sshd) -> None:
    if sshd["user"] != "root":
        pytest.skip("sudo without a password needs root here")
    state, host = _ssh_host(sshd, _sudo=True)
    ok, text = confirm.fresh_connection_check(state, host, 'echo "${SUDO_COMMAND:-no sudo}"', 10)
    assert ok, text
    assert text.startswith("/") and "sh -c" in text  # sudo ran it


def test_confirm_step_over_ssh(sshd, tmp_path, monkeypatch) -> None:
    """The host program arms (a real timer process); confirm_now confirms it over a new
    SSH connection; an unreachable host gets one line with the deadline's local time."""
    monkeypatch.setenv("FROXLOR_FLEET_ROOT", str(tmp_path))  # the timer's, too
    paths = commit.Paths(root=str(tmp_path))
    # the timer: a fork of this process, as in the host program
    armed = commit.arm(paths, 30, TOKEN, {}, None, lambda line: None, lambda undo: (True, "nothing"))
    armed.started()
    env = {"FROXLOR_FLEET_ROOT": str(tmp_path)}
    command = StringCommand(sys.executable, fleethost.__file__, "confirm", TOKEN)
    state, host = _ssh_host(sshd, _env=env)
    logged = []
    host.log_styled = lambda message, **kw: logged.append(message)  # type: ignore[method-assign]
    assert confirm.confirm_now(state, host, command, time.time() + 30) is True, logged
    assert [line.split(";")[0].split(" in ")[0] for line in logged] == [
        "commit-confirm: confirming the UFW change over a new SSH connection",
        "commit-confirm: confirmed over a new SSH connection"]
    assert commit.status(paths) == ["no pending reverts"]
    logged.clear()

    # Unreachable (nothing listens): one line with the local time of the deadline.
    armed = commit.arm(paths, 30, "other-token", {}, None, lambda line: None,
                       lambda undo: (True, "nothing"))
    armed.started()
    deadline = time.time() + 30
    state, host = _ssh_host(sshd, _env=env, ssh_port=_free_port())
    host.log_styled = lambda message, **kw: logged.append(message)  # type: ignore[method-assign]
    other = StringCommand(sys.executable, fleethost.__file__, "confirm", "other-token")
    assert confirm.confirm_now(state, host, other, deadline) is False
    (_, line) = logged
    at = time.strftime("%H:%M:%S", time.localtime(deadline))
    assert line.startswith("could not open a new SSH connection after the change; the host "
                           f"restores its previous firewall at {at} (")
    assert commit.confirm(paths, "other-token")[0] == 0


@pytest.mark.parametrize("timeout,ok", [(0, True), (5, True), (240, True), (4, False),
                                        (241, False), (86400, False), (True, False)])
def test_the_control_side_arms_only_what_the_data_allows(timeout, ok) -> None:
    """One limit for the confirm timeout (catalog.CONFIRM_TIMEOUT_RANGE), used by the
    data check and by the command that arms the host (was 5-240 and 0-86400)."""
    from froxlor_fleet.model.catalog import CONFIRM_TIMEOUT_RANGE

    assert CONFIRM_TIMEOUT_RANGE == (5, 240)
    if ok:
        assert confirm_timeout(timeout) == timeout
    else:
        with pytest.raises(ValueError):
            confirm_timeout(timeout)
