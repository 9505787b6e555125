"""The ``froxlor-fleet`` command end to end, in a subprocess as a user runs it.

Hosts are ``@canned/<name>`` (tests/fakeconn: a pyinfra connector with canned output from
real ufw captures) or SSH hosts on 127.0.0.1 ports where nothing listens; nothing ever
runs on this machine. Every ``--json`` output is checked against the shipped schema.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from froxlor_fleet import __version__
from froxlor_fleet.audit.fact import LISTENING_SECTION
from froxlor_fleet.facts import SECTION
from froxlor_fleet.operations.ftpplan import render_fragment
from helpers import FIXTURES, build_fact
from test_audit import admin_passive, ftp_dump

ROOT = Path(__file__).resolve().parent.parent
FAKECONN = Path(__file__).resolve().parent / "fakeconn"
SCHEMA = json.loads(resources.files("froxlor_fleet.audit").joinpath("audit.schema.json")
                    .read_text())
SS_WEB = (FIXTURES / "ss-lab-web-host.txt").read_text().splitlines()

FRAGMENT = render_fragment((49152, 65534))
# The state fact's ftp section: froxlor's ProFTPd configuration with the fragment in conf.d.
FTP = [f"{SECTION}ftp", *ftp_dump(FRAGMENT)]
WEB_OK = build_fact({"scenario": "converged-web-ftp",
                     "fragment": FRAGMENT}) + FTP + [LISTENING_SECTION, *SS_WEB]
WEB_DRIFT = build_fact({"scenario": "converged-web-ftp", "conf": {"LOGLEVEL": "medium"},
                        "fragment": FRAGMENT}) + FTP + [LISTENING_SECTION, *SS_WEB]
WEB_UNMANAGED = build_fact({
    "scenario": "converged-web-ftp", "fragment": FRAGMENT,
    "rules4": [line for line in (FIXTURES / "ufw-0.36.2" / "converged-web-ftp" / "user.rules")
               .read_text().splitlines() if line.startswith("### tuple ###")]
    + ["### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in"]})
WEB_UNMANAGED += FTP + [LISTENING_SECTION, *SS_WEB]
# An admin's PassivePorts in proftpd.conf: ProFTPd reads it before conf.d/, so it wins.
WEB_ADMIN_PASSIVE = (build_fact({"scenario": "converged-web-ftp", "fragment": FRAGMENT})
                     + [f"{SECTION}ftp", *ftp_dump(FRAGMENT, admin_passive(40000, 40100))]
                     + [LISTENING_SECTION, *SS_WEB])

INVENTORY = """\
from froxlor_fleet.fleetcheck import check_fleet
web_servers = ["@canned/web1", "@canned/web2"]
ftp_servers = ["@canned/web1", "@canned/web2"]
check_fleet(__file__)
"""
GROUP_DATA = {"web_servers": 'froxlor_roles = ["web"]\n',
              "ftp_servers": 'froxlor_roles = ["ftp"]\n'}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict:
        data = json.loads(self.stdout)
        jsonschema.validate(data, SCHEMA)
        return data

    @property
    def out(self) -> str:
        return self.stdout + self.stderr


class Fleet:
    """A folder with an inventory of fake hosts and their canned state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hosts: dict[str, dict] = {"web1": {"lines": WEB_OK}, "web2": {"lines": WEB_OK}}
        (path / "inventory.py").write_text(INVENTORY)
        self.group_data("group_data", GROUP_DATA)

    def group_data(self, folder: str, files: dict[str, str]) -> None:
        (self.path / folder).mkdir(exist_ok=True)
        for group, text in files.items():
            (self.path / folder / f"{group}.py").write_text(textwrap.dedent(text))

    def commands(self) -> list[dict]:
        log = self.path / "commands.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def run(self, *args: str) -> Result:
        (self.path / "fleet.json").write_text(json.dumps(self.hosts))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(FAKECONN)]),
                   CANNED_FLEET=str(self.path / "fleet.json"),
                   CANNED_FLEET_LOG=str(self.path / "commands.log"))
        res = subprocess.run([sys.executable, "-m", "froxlor_fleet", *args], cwd=self.path,
                             capture_output=True, text=True, env=env, timeout=120)
        assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
        return Result(res.returncode, res.stdout, res.stderr)

    def audit(self, *args: str) -> Result:
        return self.run("audit", "inventory.py", *args)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on return: connections are refused


@contextmanager
def silent_port(seconds: float = 30,
                serve: Callable[[socket.socket], None] | None = None) -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections and never says a word (no SSH
    banner), or hands each to ``serve``; it stops on leaving the block, or by itself
    after ``seconds``."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    done = threading.Event()
    accepted: list[socket.socket] = []

    def accept() -> None:
        deadline = time.monotonic() + seconds
        while not done.is_set() and time.monotonic() < deadline:
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            if serve is not None:
                serve(accepted[-1])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@contextmanager
def refusing_ssh_server(seconds: float = 30) -> Iterator[int]:
    """A real SSH server (paramiko's) on 127.0.0.1 that refuses every authentication;
    it stops on leaving the block, or by itself after ``seconds``."""
    import paramiko

    class Refuse(paramiko.ServerInterface):
        def get_allowed_auths(self, username: str) -> str:
            return "password,publickey"

    host_key = paramiko.RSAKey.generate(2048)
    transports: list[paramiko.Transport] = []

    def serve(conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transports.append(transport)
        transport.add_server_key(host_key)
        try:
            transport.start_server(server=Refuse())
        except (paramiko.SSHException, EOFError, OSError):
            pass

    with silent_port(seconds, serve=serve) as port:
        yield port
    for transport in transports:
        transport.close()


# --- the command ---------------------------------------------------------------------------

def test_help_exits_0_and_lists_the_exit_codes(fleet: Fleet) -> None:
    for args in (["--help"], ["audit", "--help"]):
        res = fleet.run(*args)
        assert res.code == 0, res.out
        assert "Exit status:" in res.stdout and "0  every targeted host matches" in res.stdout
        assert "1  drift" in res.stdout and "2  errors" in res.stdout
    assert "Usage: froxlor-fleet [OPTIONS] COMMAND" in fleet.run("--help").stdout


def test_version(fleet: Fleet) -> None:
    res = fleet.run("--version")
    assert res.code == 0 and res.stdout.startswith(f"froxlor-fleet {__version__} (pyinfra 3.")


def test_main_module_does_nothing_on_import() -> None:
    res = subprocess.run([sys.executable, "-c", "import froxlor_fleet.__main__; print('ok')"],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert (res.returncode, res.stdout, res.stderr) == (0, "ok\n", "")


def test_bad_command_line_is_exit_2_with_json_when_asked(fleet: Fleet) -> None:
    res = fleet.run("audit", "--json", "--no-such-option")
    assert res.code == 2 and "No such option" in res.stderr
    assert res.doc["exit"] == 2 and res.doc["findings"][0]["kind"] == "usage_error"
    assert fleet.run("audit").code == 2  # missing INVENTORY
    assert fleet.run("frobnicate").code == 2


# --- exit status 0 / 1 / 2 ---------------------------------------------------------------

def test_exit_0_when_the_fleet_matches_its_data(fleet: Fleet) -> None:
    res = fleet.audit("--json")
    assert res.code == 0, res.out
    doc = res.doc
    assert (doc["exit"], doc["status"]) == (0, "ok")
    assert doc["summary"] == {"hosts": 2, "ok": 2, "drift": 0, "unreachable": 0, "error": 0}
    assert [h["host"] for h in doc["hosts"]] == ["@canned/web1", "@canned/web2"]
    assert {"port": 21, "proto": "tcp", "admitted": "open", "listening": True,
            "processes": ["proftpd"]} in doc["hosts"][0]["ports"]
    text = fleet.audit()
    assert text.code == 0 and "2 hosts, 2 ok, 0 drift, 0 unreachable, 0 errors" in text.stdout


def test_each_host_is_read_with_one_command_and_nothing_else(fleet: Fleet) -> None:
    assert fleet.audit().code == 0
    commands = fleet.commands()
    assert sorted(c["host"] for c in commands) == ["@canned/web1", "@canned/web2"]
    assert all(c["command"].endswith("ss -H -ltnup 2>/dev/null || true") for c in commands)


def test_exit_1_on_drift(fleet: Fleet) -> None:
    fleet.hosts["web2"] = {"lines": WEB_DRIFT}
    res = fleet.audit("--json")
    assert res.code == 1, res.out
    drift = [f for f in res.doc["findings"] if f["severity"] == "drift"]
    assert drift == [{"kind": "setting", "severity": "drift", "host": "@canned/web2", "port": None,
                      "ports": None, "proto": None, "role": None, "processes": [],
                      "detail": "logging medium (want low)"}]


def test_proftpds_own_passive_range_that_ufw_does_not_admit_is_drift(fleet: Fleet) -> None:
    fleet.hosts["web2"] = {"lines": WEB_ADMIN_PASSIVE}
    res = fleet.audit("--json")
    assert res.code == 1, res.out
    web2 = res.doc["hosts"][1]
    assert web2["passive_ports"] == {
        "wanted": "49152:65534", "proftpd": "40000:40100", "ufw": "49152:65534",
        "proftpd_origin": "/etc/proftpd/proftpd.conf:29", "fragment": "49152:65534",
        "match": False}
    assert [f["detail"] for f in res.doc["findings"] if f["kind"] == "passive_disagree"] == [
        "/etc/proftpd/proftpd.conf:29 sets PassivePorts 40000 40100; UFW admits 49152:65534 "
        "(ProFTPd uses it, not this deploy's fragment; remove it there)"]
    text = fleet.audit().stdout
    assert "40000:40100|49152:65534 ≠" in text
    assert len(fleet.commands()) == 4  # still one command per host and run


def test_a_rule_with_another_action_is_drift(fleet: Fleet) -> None:
    res = fleet.audit("--json", "--data", "ssh_rate_limit=true")
    assert res.code == 1, res.out
    assert sorted((f["host"], f["detail"]) for f in res.doc["findings"]
                  if f["kind"] == "action_rule") == [
        ("@canned/web1", "allow 22/tcp should be limit (ssh)"),
        ("@canned/web2", "allow 22/tcp should be limit (ssh)")]


def test_unmanaged_rules_are_drift_only_with_purge(fleet: Fleet) -> None:
    fleet.hosts["web1"] = {"lines": WEB_UNMANAGED}
    kept = fleet.audit("--json")
    assert kept.code == 0, kept.out
    assert [(f["kind"], f["severity"], f["port"]) for f in kept.doc["findings"]
            if f["kind"] == "unmanaged_rule"] == [("unmanaged_rule", "notice", 8080)]
    purged = fleet.audit("--json", "--data", "firewall_purge_unmanaged=true")
    assert purged.code == 1
    assert purged.doc["hosts"][0]["purge_unmanaged"] is True


def test_one_unreachable_host_is_exit_2_and_the_others_are_audited(fleet: Fleet) -> None:
    fleet.hosts["web2"] = {"refuse": "Could not connect (refused)"}
    res = fleet.audit("--json")
    assert res.code == 2
    verdicts = {h["host"]: h["verdict"] for h in res.doc["hosts"]}
    assert verdicts == {"@canned/web1": "ok", "@canned/web2": "unreachable"}
    assert "@canned/web2: unreachable: Could not connect (refused)" in res.stderr


def test_every_host_unreachable_over_real_ssh_is_exit_2_not_a_traceback(fleet: Fleet) -> None:
    port = closed_port()
    (fleet.path / "inventory.py").write_text(
        f"web_servers = [('web1', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}}}),\n"
        f"               ('web2', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}}})]\n")
    for args in (["--json"], []):
        res = fleet.audit(*args)  # (fleet.audit asserts there is no traceback)
        assert res.code == 2, res.out
    doc = fleet.audit("--json").doc
    assert doc["summary"]["unreachable"] == 2
    assert all(f["kind"] == "unreachable" and "Could not connect" in f["detail"]
               for f in doc["findings"])


def test_a_missing_ssh_key_file_is_named_for_every_host(fleet: Fleet) -> None:
    port = closed_port()  # never reached: the key is loaded before connecting
    (fleet.path / "inventory.py").write_text(
        f"web_servers = [('web1', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}}}),\n"
        f"               ('web2', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}}})]\n")
    key = fleet.path / "no-such-dir" / "id_ed25519"
    res = fleet.audit("--json", "--ssh-key", str(key))  # (no traceback: Fleet.run checks)
    assert res.code == 2, res.out
    details = [f["detail"] for f in res.doc["findings"]]
    assert details == [f"unreachable: No such private key file: {key}"] * 2, details


def test_a_port_that_accepts_but_never_speaks_ssh_says_so(fleet: Fleet) -> None:
    (fleet.path / "config.py").write_text("from pyinfra import config\nconfig.CONNECT_TIMEOUT = 2\n")
    with silent_port() as port:
        (fleet.path / "inventory.py").write_text(
            f"web_servers = [('web1', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}}})]\n")
        started = time.monotonic()
        res = fleet.audit("--json")
        took = time.monotonic() - started
    assert res.code == 2, res.out
    [finding] = res.doc["findings"]
    assert finding["kind"] == "unreachable"
    assert "No existing session" not in finding["detail"]
    assert "no SSH banner within 2 s" in finding["detail"], finding["detail"]
    assert took < 20  # the connect timeout, not paramiko's banner timeout after it


def test_refused_authentication_says_so_and_never_prints_the_password(fleet: Fleet) -> None:
    with refusing_ssh_server() as port:
        (fleet.path / "inventory.py").write_text(
            f"web_servers = [('web1', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port},\n"
            f"                          'ssh_known_hosts_file': '/dev/null',\n"
            f"                          'ssh_strict_host_key_checking': 'no'}})]\n")
        res = fleet.audit("--json", "--ssh-user", "auditor", "--ssh-password", "s3cr3t-pw")
    assert res.code == 2, res.out
    [finding] = res.doc["findings"]
    assert finding["detail"] == ("unreachable: Authentication error (username=auditor) "
                                 "(Authentication failed.)"), finding["detail"]
    assert "s3cr3t-pw" not in res.out


def test_an_inventory_that_is_a_folder_says_so_with_its_path(fleet: Fleet) -> None:
    res = fleet.run("audit", str(fleet.path), "--json")
    assert res.code == 2, res.out
    [finding] = res.doc["findings"]
    assert finding["kind"] == "inventory_error"
    assert finding["detail"] == f"Is a directory: {fleet.path}", finding["detail"]
    assert fleet.run("audit", str(fleet.path)).stdout.splitlines()[-1] == (
        f"  inventory error: Is a directory: {fleet.path}")


def test_a_failed_read_is_exit_2(fleet: Fleet) -> None:
    fleet.hosts["web1"] = {"fail": "sudo: a password is required"}
    res = fleet.audit("--json")
    assert res.code == 2
    assert res.doc["hosts"][0]["verdict"] == "unreachable"
    assert "could not read its state" in res.doc["findings"][0]["detail"]


def test_missing_inventory_is_exit_2(fleet: Fleet) -> None:
    res = fleet.run("audit", "nothere.py", "--json")
    assert res.code == 2
    assert res.doc["findings"][0]["kind"] == "inventory_error"
    assert "no inventory file 'nothere.py'" in res.doc["findings"][0]["detail"]
    assert fleet.run("audit", "nothere.py").code == 2


def test_inventory_without_hosts_is_exit_2(fleet: Fleet) -> None:
    (fleet.path / "empty.py").write_text("web_servers = []\n")
    res = fleet.run("audit", "empty.py", "--json")
    assert res.code == 2 and "has no hosts" in res.doc["findings"][0]["detail"]


def test_broken_group_data_file_is_exit_2(fleet: Fleet) -> None:
    fleet.group_data("group_data", {"web_servers": "froxlor_roles = [\n"})
    res = fleet.audit("--json")
    assert res.code == 2
    finding = res.doc["findings"][0]
    assert finding["kind"] == "inventory_error" and "web_servers.py" in finding["detail"]


def test_error_in_the_inventory_file_is_exit_2_naming_file_and_line(fleet: Fleet) -> None:
    (fleet.path / "inventory.py").write_text(INVENTORY + "oops = undefined_name\n")
    res = fleet.audit("--json")
    assert res.code == 2
    assert res.doc["findings"][0]["detail"] == \
        "inventory.py:5: NameError: name 'undefined_name' is not defined"


def test_bad_data_is_exit_2_naming_host_key_and_value(fleet: Fleet) -> None:
    (fleet.path / "inventory.py").write_text(INVENTORY.replace(
        'ftp_servers = ["@canned/web1", "@canned/web2"]',
        'ftp_servers = ["@canned/web1", "@canned/web2"]\ndb_servers = ["@canned/db1"]'))
    fleet.group_data("group_data", {"db_servers": 'froxlor_roles = ["mysql"]\n'})
    res = fleet.audit("--json")
    assert res.code == 2
    by_host = {h["host"]: h for h in res.doc["hosts"]}
    assert by_host["@canned/db1"]["verdict"] == "error"
    assert by_host["@canned/web1"]["verdict"] == "ok"  # the others are still audited
    errors = [f["detail"] for f in res.doc["findings"] if f["severity"] == "error"]
    assert len(errors) == 1 and "host @canned/db1: mysql_allowed_sources = None" in errors[0]
    assert {c["host"] for c in fleet.commands()} == {"@canned/web1", "@canned/web2"}  # db1 not read


# --- pyinfra's inventory options ---------------------------------------------------------------

def test_limit_takes_group_names_host_names_and_globs(fleet: Fleet) -> None:
    for limit, hosts in (("web_servers", ["@canned/web1", "@canned/web2"]),
                         ("@canned/web2", ["@canned/web2"]), ("*web1", ["@canned/web1"])):
        doc = fleet.audit("--json", "--limit", limit).doc
        assert [h["host"] for h in doc["hosts"]] == hosts, limit
        assert doc["limit"] == [limit]


def test_limit_matching_nothing_is_exit_2(fleet: Fleet) -> None:
    res = fleet.audit("--json", "--limit", "mail_servers")
    assert res.code == 2 and res.doc["hosts"] == []
    assert res.doc["findings"][0]["kind"] == "limit_unmatched"
    assert fleet.commands() == []
    partly = fleet.audit("--json", "--limit", "*web1", "--limit", "typo*")
    assert partly.code == 2  # a typo must not pass silently...
    assert [h["host"] for h in partly.doc["hosts"]] == ["@canned/web1"]  # ...nor hide the rest


def test_limit_bad_data_outside_the_limit_is_not_an_error(fleet: Fleet) -> None:
    (fleet.path / "inventory.py").write_text(INVENTORY + 'db_servers = ["@canned/db1"]\n')
    fleet.group_data("group_data", {"db_servers": 'froxlor_roles = ["mysql"]\n'})
    assert fleet.audit("--limit", "web_servers").code == 0


def test_data_and_group_data_options_are_used(fleet: Fleet) -> None:
    res = fleet.audit("--json", "--data", "firewall_logging=medium")
    assert res.code == 1 and "logging low (want medium)" in res.stdout
    fleet.group_data("extra", {"ftp_servers": "ftp_passive_ports = (50000, 50100)\n"})
    res = fleet.audit("--json", "--group-data", "extra")
    assert res.code == 1
    assert res.doc["hosts"][0]["passive_ports"]["wanted"] == "50000:50100"


def test_sudo_from_the_flag_config_py_and_host_data_reaches_the_hosts(fleet: Fleet) -> None:
    assert fleet.audit("--sudo", "--sudo-user", "root").code == 0
    assert {(c["sudo"], c["sudo_user"]) for c in fleet.commands()} == {(True, "root")}
    (fleet.path / "commands.log").unlink()
    (fleet.path / "config.py").write_text("from pyinfra import config\nconfig.SUDO = True\n")
    assert fleet.audit().code == 0
    assert {c["sudo"] for c in fleet.commands()} == {True}
    (fleet.path / "config.py").unlink()
    (fleet.path / "commands.log").unlink()
    fleet.group_data("group_data", {"ftp_servers": 'froxlor_roles = ["ftp"]\n_sudo = True\n'})
    assert fleet.audit().code == 0
    assert {c["sudo"] for c in fleet.commands()} == {True}


def test_parallel_is_accepted(fleet: Fleet) -> None:
    assert fleet.audit("--parallel", "1").code == 0
    assert fleet.audit("--parallel", "0").code == 2  # a usage error, not a traceback


# --- Prometheus ---------------------------------------------------------------------------------

def test_prometheus_file_is_written_for_every_outcome(fleet: Fleet) -> None:
    prom = fleet.path / "textfile" / "froxlor_fleet.prom"
    prom.parent.mkdir()
    assert fleet.audit("--prometheus", str(prom)).code == 0
    assert "froxlor_fleet_audit_exit_status 0" in prom.read_text().splitlines()
    fleet.hosts["web2"] = {"refuse": "Could not connect (refused)"}
    assert fleet.audit("--json", "--prometheus", str(prom)).code == 2
    text = prom.read_text()
    assert "froxlor_fleet_audit_exit_status 2" in text.splitlines()
    assert 'froxlor_fleet_audit_host_verdict{host="@canned/web2",verdict="unreachable"} 1' in text
    assert sorted(p.name for p in prom.parent.iterdir()) == ["froxlor_fleet.prom"]


def test_prometheus_file_is_written_for_usage_errors_too(fleet: Fleet) -> None:
    prom = fleet.path / "froxlor_fleet.prom"
    for args in (["--prometheus", str(prom)],  # no INVENTORY
                 ["inventory.py", "--prometheus", str(prom), "--no-such-option"],
                 [f"--prometheus={prom}", "inventory.py", "--parallel", "0"],
                 ["nothere.py", "--prometheus", str(prom)]):  # a missing inventory file
        prom.unlink(missing_ok=True)
        assert fleet.run("audit", *args).code == 2
        lines = prom.read_text().splitlines()
        assert "froxlor_fleet_audit_exit_status 2" in lines, args
        kind = "inventory_error" if "nothere.py" in args else "usage_error"
        assert f'froxlor_fleet_audit_findings{{host="",kind="{kind}",severity="error"}} 1' in lines


def test_prometheus_has_the_duration_of_the_run(fleet: Fleet) -> None:
    prom = fleet.path / "froxlor_fleet.prom"
    assert fleet.audit("--prometheus", str(prom)).code == 0
    [sample] = [line for line in prom.read_text().splitlines()
                if line.startswith("froxlor_fleet_audit_duration_seconds ")]
    assert 0 < float(sample.split()[1]) < 120


def test_prometheus_to_a_missing_folder_is_exit_2(fleet: Fleet) -> None:
    res = fleet.audit("--json", "--prometheus", str(fleet.path / "nope" / "x.prom"))
    assert res.code == 2
    assert [f["kind"] for f in res.doc["findings"] if f["severity"] == "error"] == ["output_error"]


# --- verdicts from the running daemon (issue 20), fail2ban's bans (issue 19) ------------

CONVERGED_RULES4 = [line for line in (FIXTURES / "ufw-0.36.2" / "converged-web-ftp" / "user.rules")
                    .read_text().splitlines() if line.startswith("### tuple ###")]
BAN_SSHD = ("### tuple ### reject any any 0.0.0.0/0 any 203.0.113.{n} in comment="
            + b"by Fail2Ban after 5 attempts against sshd".hex())
BAN_PROFTPD = ("### tuple ### reject any any 0.0.0.0/0 any 198.51.100.{n} in comment="
               + b"by Fail2Ban after 3 attempts against proftpd".hex())


def canned(tail: list[str] | None = None, **spec) -> list[str]:
    """A converged web+ftp host's audit read with ``spec`` for build_fact and ``tail``
    as its ss output (default: sshd and proftpd listening)."""
    return (build_fact({"scenario": "converged-web-ftp", "fragment": FRAGMENT, **spec}) + FTP
            + [LISTENING_SECTION, *(SS_WEB if tail is None else tail)])


def test_an_ftp_daemon_that_is_down_is_exit_2(fleet: Fleet) -> None:
    fleet.hosts["web2"] = {"lines": canned(SS_WEB[:1])}  # sshd only: nothing on 21
    res = fleet.audit("--json")
    assert res.code == 2, res.out
    assert [(f["host"], f["severity"], f["port"], f["detail"]) for f in res.doc["findings"]
            if f["kind"] == "ftp_down"] == [
        ("@canned/web2", "error", 21, "FTP down: nothing listens on 21/tcp (proftpd is not running)")]
    assert [h["verdict"] for h in res.doc["hosts"]] == ["ok", "error"]
    assert "@canned/web2: FTP down: nothing listens on 21/tcp" in res.stderr


def test_a_fragment_the_running_proftpd_never_loaded_is_exit_1(fleet: Fleet) -> None:
    fleet.hosts["web2"] = {"lines": canned(ftp_running={"proftpd": 21}, loaded="0" * 64)}
    res = fleet.audit("--json")
    assert res.code == 1, res.out
    assert [f["host"] for f in res.doc["findings"] if f["kind"] == "ftp_not_loaded"] == \
        ["@canned/web2"]


def test_ufw_loaded_with_enabled_no_is_exit_1_and_not_shown_inactive(fleet: Fleet) -> None:
    fleet.hosts["web2"] = {"lines": canned(conf={"ENABLED": "no"})}
    res = fleet.audit("--json")
    assert res.code == 1, res.out
    ufw = res.doc["hosts"][1]["ufw"]
    assert (ufw["state"], ufw["running"], ufw["conf_enabled"]) == ("running_disabled", True, False)
    ports = {(p["port"], p["proto"]): p["admitted"] for p in res.doc["hosts"][1]["ports"]}
    assert ports[(3306, "tcp")] == "blocked" and ports[(22, "tcp")] == "open"
    assert [f["kind"] for f in res.doc["findings"] if f["severity"] == "drift"] == \
        ["ufw_not_enabled"]


def test_fail2ban_bans_are_counted_and_never_change_the_exit_status(fleet: Fleet,
                                                                     tmp_path: Path) -> None:
    bans = [BAN_SSHD.format(n=n) for n in (1, 2, 3)] + [BAN_PROFTPD.format(n=1)]
    fleet.hosts["web2"] = {"lines": canned(rules4=bans + CONVERGED_RULES4)}
    prom = tmp_path / "audit.prom"
    res = fleet.audit("--json", "--prometheus", str(prom))
    assert res.code == 0, res.out
    found = [f for f in res.doc["findings"] if f["kind"] == "bans"]
    assert [(f["host"], f["severity"], f["jails"], f["detail"]) for f in found] == [
        ("@canned/web2", "notice", {"sshd": 3, "proftpd": 1}, "fail2ban bans: sshd 3, proftpd 1")]
    metrics = prom.read_text().splitlines()
    assert 'froxlor_fleet_audit_bans{host="@canned/web2",jail="sshd"} 3' in metrics
    assert 'froxlor_fleet_audit_bans{host="@canned/web2",jail="proftpd"} 1' in metrics
    assert "froxlor_fleet_audit_exit_status 0" in metrics
    text = fleet.audit()
    assert text.code == 0 and "@canned/web2: fail2ban bans: sshd 3, proftpd 1" in text.stdout
    assert "203.0.113." not in text.stdout + prom.read_text()
