"""``froxlor-fleet discover`` on the lab fleet (issue 18, part one): a host configured by hand
(services listening, a hand-made UFW rule), the proposal written with ``--out``, then
installed as the fleet's data: ``pyinfra … --dry --diff`` removes no rule that admits a
port in use on any host, and the rollout keeps every port that answered from the control
node before answering after. froxlor is not installed on these hosts: its settings are
"not read", and the note says why (test_15_froxlor_settings.py reads them on a host
with froxlor's database).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys

from conftest import ROOT, TEST_LAB
from driver import DEPLOY
from froxlor_fleet.audit.fact import LISTENING_SECTION, parse_listening
from labtools import connect, start_listener, stop_listener

PROPOSAL = TEST_LAB / "discover-proposal"
INVENTORY = TEST_LAB / "inventory_discover.py"
# What a hand-configured mail host runs: an MTA on 25, IMAP on 143 (role ports its managed
# rules admit), a shop backend on 8080 with a hand-made rule, and an exporter on 9100 that
# UFW blocks. Nothing listens on pop3's 110/995, which its managed rule admits.
PIDFILE = "/run/lab-discover.pid"
PORTS = ["25", "143", "8080", "9100"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def discover(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "froxlor_fleet", "discover", "inventory.py",
                          *args], cwd=TEST_LAB, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    return res


def in_use(lab, name: str) -> set[tuple[int, str]]:
    """(port, proto) a process listens on publicly, as the host's own ss says."""
    lines = lab.sh(name, "ss -H -ltnu").stdout.splitlines()
    return set(parse_listening([LISTENING_SECTION, *lines]))


def answering(lab) -> set[tuple[str, int]]:
    """(host, port) of every TCP port in use that accepts a connection from here."""
    return {(name, port) for name in lab.hosts for port, proto in in_use(lab, name)
            if proto == "tcp" and connect(lab.ip(name), port, timeout=1.0) == "connected"}


def removed_rules(output: str) -> dict[str, list[str]]:
    """The ``- ...`` lines of pyinfra's --diff, per host ("[host] Will change UFW")."""
    found: dict[str, list[str]] = {}
    host = None
    for raw in output.splitlines():
        line = ANSI.sub("", raw)
        header = re.search(r"\[([^\]]+)\]\s+Will change UFW", line)
        if header:
            host = header.group(1)
            found.setdefault(host, [])
            continue
        change = re.match(r"\s+([-+~]) (.*)$", line)
        if host and change:
            if change.group(1) == "-":
                found[host].append(change.group(2))
        elif host and line.strip():
            host = None
    return found


def covers(rule: str, port: int, proto: str) -> bool:
    """Does a ``- allow 110,995/tcp  (pop3)`` line admit ``port``/``proto``?"""
    m = re.match(r"(allow|limit)(?: log)? ([\d,:]+)/(tcp|udp)", rule)
    if not m or m.group(3) != proto:
        return False
    for item in m.group(2).split(","):
        low, _, high = item.partition(":")
        if int(low) <= port <= int(high or low):
            return True
    return False


def install(lab) -> None:
    """The proposal as the fleet's data: its group files replace the lab's role files
    (all.py keeps the connection settings), its host files go into the host entries of an
    inventory like the lab's own, through ``host_data`` as docs/discover.md says."""
    for path in (lab.lab_dir / "group_data").glob("*.py"):
        if path.name != "all.py":
            path.unlink()
    for path in (PROPOSAL / "group_data").glob("*.py"):
        shutil.copy(path, lab.lab_dir / "group_data" / path.name)
    info = json.loads((TEST_LAB / "lab.json").read_text())
    lines = ["from froxlor_fleet.discover import host_data",
             "from froxlor_fleet.fleetcheck import check_fleet", ""]
    for group, members in info["groups"].items():
        entries = ", ".join(f"({m!r}, {{'ssh_hostname': {lab.ip(m)!r}, "
                            f"**host_data({str(PROPOSAL / 'host_data')!r}, {m!r})}})"
                            for m in members)
        lines.append(f"{group} = [{entries}]")
    lines += ["", "check_fleet(__file__)", ""]
    INVENTORY.write_text("\n".join(lines))


def test_discover_proposal_rolled_out_closes_no_port_in_use(lab) -> None:

    assert lab.deploy("-y").returncode == 0
    mail = lab.by_kind("mail")[0]
    shutil.rmtree(PROPOSAL, ignore_errors=True)
    proc = start_listener(lab, mail, PORTS, PIDFILE)
    try:
        lab.sh(mail, "ufw allow 8080/tcp comment 'shop backend' >/dev/null")
        used = {name: in_use(lab, name) for name in lab.hosts}
        assert {(25, "tcp"), (143, "tcp"), (8080, "tcp"), (9100, "tcp")} <= used[mail]
        before_answering = answering(lab)
        assert {(mail, 25), (mail, 143), (mail, 8080)} <= before_answering
        assert (mail, 9100) not in before_answering  # UFW blocks it

        # 1. discover: read-only, one proposal per host
        files_before = lab.state_files()
        res = discover("--out", str(PROPOSAL))
        assert res.returncode in (0, 1), res.stdout + res.stderr
        assert lab.state_files() == files_before  # changed nothing
        written = sorted(p.relative_to(PROPOSAL).as_posix() for p in PROPOSAL.rglob("*.py"))
        assert written, res.stdout + res.stderr
        mail_file = next(PROPOSAL / p for p in written
                         if p in ("group_data/mail_servers.py", f"host_data/{mail}.py"))
        text = mail_file.read_text()
        data = {k: v for k, v in runpy.run_path(str(mail_file)).items() if not k.startswith("_")}
        assert data["froxlor_roles"] == ["imap", "smtp"], text
        assert data["firewall_extra_rules"] == [{"port": 8080, "comment": "shop backend"}], text
        assert "froxlor says (not read)" in text
        assert "froxlor's settings not read: froxlor not installed" in text
        assert "21/tcp listens (proftpd) but UFW blocks it: ftp not proposed" in text
        assert "UFW admits 110,995/tcp (pop3's ports) but nothing listens there" in text
        # the exporter UFW blocks stays blocked: no extra rule (checked above), a note
        assert "9100/tcp python3 on 0.0.0.0 listens but UFW blocks it: it stays blocked" in text

        # 2. the proposal as the fleet's data: the dry run removes nothing in use
        install(lab)
        dry = lab.pyinfra(INVENTORY.name, str(DEPLOY), "--dry", "--diff")
        assert dry.returncode == 0, dry.out
        assert lab.state_files() == files_before  # --dry touched nothing
        removed = removed_rules(dry.out)
        assert any("110,995/tcp" in rule for rule in removed.get(mail, [])), dry.out  # idle pop3
        for name, rules in removed.items():
            for port, proto in used[name]:
                closing = [rule for rule in rules if covers(rule, port, proto)]
                assert not closing, (name, port, proto, closing, dry.out)
        assert re.search(r"~ allow 8080/tcp\s+\(unmanaged -> extra", ANSI.sub("", dry.out)), dry.out
        assert "~ ufw: active -> inactive" not in dry.out
        assert not re.search(r"~ default incoming: allow -> ", dry.out)

        # 3. rolled out: every port that answered before still answers
        applied = lab.pyinfra(INVENTORY.name, str(DEPLOY), "-y")
        assert applied.returncode == 0, applied.out
        after_answering = answering(lab)
        assert before_answering <= after_answering, before_answering - after_answering
    finally:
        stop_listener(lab, mail, proc, PIDFILE)
        lab.sh(mail, "ufw delete allow 8080/tcp >/dev/null", check=False)
        INVENTORY.unlink(missing_ok=True)
        shutil.rmtree(PROPOSAL, ignore_errors=True)
        # the lab fixture puts group_data back and deploys it again (lab_back_to_baseline)
