"""``froxlor-fleet audit --probe`` and the audit's progress, end to end in a subprocess
(hosts ``@canned/<name>``, see test_cli.py). The FTPS probe itself is tested against a
real TLS server in test_probe.py; here the command's plumbing: options, the one remote
command, JSON/text/Prometheus, the password kept out of every output, and progress on
stderr only when stderr is a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from froxlor_fleet.audit.fact import FleetAuditState
from froxlor_fleet.facts import SECTION
from helpers import addrs_from_ip
from test_cli import FAKECONN, ROOT, WEB_OK, Fleet

SECRET = "s3cret-Probe-pw"
# the host's `ip -o addr show` (loopback here: the probe of the canned host reaches this
# machine, where nothing listens); its temporary address, listed first, is no customer's
IP_ADDR = ("2: eth0    inet6 2001:db8::99/64 scope global temporary dynamic \\       "
           "valid_lft 1 preferred_lft 1\n"
           "2: eth0    inet6 ::1/128 scope global \\       valid_lft forever preferred_lft "
           "forever\n")
# the audit's one read of a host, --probe or not: the state read carries the addresses
READ = FleetAuditState().command().get_raw_value()


def closed(port: int, address: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return False
    except OSError:
        return True


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    """web1 and web2 (ftp + web), reached at 127.0.0.1 and ::1 by the probe."""
    if not all(closed(p) for p in (21, 22, 80, 443)):
        pytest.skip("something listens on 127.0.0.1:21/22/80/443 here")
    fleet = Fleet(tmp_path)
    fleet.group_data("group_data", {"all": 'ssh_hostname = "127.0.0.1"\n'})
    addrs = [f"{SECTION}addrs", *addrs_from_ip(IP_ADDR, tmp_path)]
    assert addrs[1:] == ["2001:db8::99 temporary", "::1"]
    for host in fleet.hosts.values():
        host["lines"] = [*WEB_OK, *addrs]
    return fleet


def test_probe_reads_each_host_with_one_command_and_tries_it_from_here(fleet: Fleet) -> None:
    res = fleet.audit("--json", "--probe", "--probe-timeout", "1")
    assert res.code == 2, res.out
    # one command per host, the plain audit's: its state read has the addresses
    assert [c["command"] for c in fleet.commands()] == [READ, READ]
    assert READ.count("ip -o addr show") == 1
    doc = res.doc  # validated against the shipped schema
    assert doc["schema"] == 2
    probe = doc["hosts"][0]["probe"]
    assert probe["passive_range"] == "49152:65534" and probe["ufw_filters"] is True
    assert [(a["address"], a["family"]) for a in probe["addresses"]] == [("127.0.0.1", 4),
                                                                         ("::1", 6)]
    ftp = probe["addresses"][0]["ftp"]
    assert (ftp["port"], ftp["reach"], ftp["stopped_at"]) == (21, "refused", "connect")
    details = [f["detail"] for f in doc["findings"] if f["host"] == "@canned/web1"
               and f["kind"].startswith("probe_")]
    assert "FTPS probe 127.0.0.1:21: could not connect: Connection refused" in details
    assert "FTPS probe [::1]:21: could not connect: Connection refused" in details
    # sshd listens on the host (ss), yet 22 refuses from here
    assert ("22/tcp at 127.0.0.1 refused from the control node, though UFW admits it and a "
            "process listens (ssh)") in details


def test_without_probe_the_read_and_the_document_are_as_before(fleet: Fleet) -> None:
    res = fleet.audit("--json")
    assert res.code == 0, res.out
    # the same one command per host as with --probe: the probe costs no read more
    assert [c["command"] for c in fleet.commands()] == [READ, READ]
    assert [h["probe"] for h in res.doc["hosts"]] == [None, None]
    assert "probe" not in res.stdout.replace('"probe": null', "")


def test_the_probe_password_is_never_printed(fleet: Fleet, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROXLOR_FLEET_PROBE_PASSWORD", SECRET)
    prom = tmp_path / "audit.prom"
    outputs = []
    for args in (["--json"], [], ["--debug"]):
        res = fleet.audit(*args, "--probe", "--probe-user", "probe", "--probe-timeout", "1",
                          "--prometheus", str(prom))
        assert res.code == 2, res.out
        outputs += [res.out, prom.read_text()]
    assert "froxlor_fleet_audit_probe_ftp" in outputs[1]
    assert "probe from the control node:" in outputs[2]
    assert not [out for out in outputs if SECRET in out]


def test_probe_options_without_probe_are_a_usage_error(fleet: Fleet, tmp_path: Path) -> None:
    prom = tmp_path / "audit.prom"
    res = fleet.audit("--json", "--probe-user", "anonymous", "--prometheus", str(prom))
    assert res.code == 2 and "--probe-user needs --probe" in res.stderr
    assert res.doc["findings"][0]["kind"] == "usage_error"
    assert "froxlor_fleet_audit_exit_status 2" in prom.read_text()
    assert fleet.commands() == []  # nothing was read


# --- progress -----------------------------------------------------------------------------

def run_with_terminal_stderr(fleet: Fleet, *args: str) -> tuple[int, str, str]:
    """The audit with stderr on a pseudo-terminal (stdout a pipe): (code, stdout, what
    the terminal got)."""
    (fleet.path / "fleet.json").write_text(json.dumps(fleet.hosts))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(FAKECONN)]),
               CANNED_FLEET=str(fleet.path / "fleet.json"),
               CANNED_FLEET_LOG=str(fleet.path / "commands.log"))
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "froxlor_fleet", "audit", "inventory.py",
                                 *args], cwd=fleet.path, env=env, stdout=subprocess.PIPE,
                                stderr=follower, stdin=subprocess.DEVNULL)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed: the process ended
                break
            if not chunk:
                break
            seen += chunk
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        code = proc.wait(60)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return code, stdout, seen.decode(errors="replace")


def test_progress_on_a_terminal_and_the_json_stays_clean(fleet: Fleet) -> None:
    code, stdout, terminal = run_with_terminal_stderr(fleet, "--json")
    assert code == 0, terminal
    assert json.loads(stdout)["exit"] == 0  # stdout: the document and nothing else
    assert "connecting to 2 hosts..." in terminal
    assert "\raudited 2/2 hosts..." in terminal
    assert terminal.endswith("\r")  # the line is cleared before the report
    code, stdout, terminal = run_with_terminal_stderr(fleet, "--probe", "--probe-timeout", "1")
    assert code == 2 and "probed 2/2 hosts..." in terminal
    assert stdout.startswith("froxlor-fleet audit: 2 hosts")


def test_no_progress_when_stderr_is_not_a_terminal(fleet: Fleet) -> None:
    res = fleet.audit("--json", "--probe", "--probe-timeout", "1")
    assert res.stderr.strip() == "\n".join(
        f"froxlor-fleet audit: @canned/{host}: {detail}" for host in ("web1", "web2")
        for detail in [f["detail"] for f in res.doc["findings"]
                       if f["host"] == f"@canned/{host}" and f["severity"] == "error"])
    assert "audited" not in res.stderr and "\r" not in res.stderr
    res = fleet.audit()
    assert (res.code, res.stderr) == (0, "")
