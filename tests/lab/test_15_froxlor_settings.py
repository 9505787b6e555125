"""``froxlor-fleet discover`` reads froxlor's own settings (issue 18, part two) on a real
systemd host (bookworm, ``lab/systemd_hosts.py up --froxlor``): MariaDB as Debian ships
it, listening on every address, holding froxlor's ``panel_settings`` as froxlor 2.x
shapes it (apache2, proftpd, Bind on, postfix, dovecot, MySQL reachable from the control
address, the control address as secondary, and froxlor's SMTP relay password), and
froxlor's ``/var/www/froxlor/lib/userdata.inc.php`` with random passwords, all made when
the host was set up.

In order: froxlor's settings are the proposal's evidence and conflicts (nothing serves
web or DNS here), MySQL blocked by UFW is not opened (the conflict names froxlor's
access host); once an admin's rule opens 3306 to anywhere, mysql is proposed with
froxlor's mysql_access_host as its sources; read as the sudo user without --sudo, the
settings are "not readable", with --sudo they are read; neither password nor the SMTP
secret is in any output or file; the read changed nothing (UFW's files, the database).
"""

from __future__ import annotations

import hashlib
import os
import re
import runpy
import shutil
import subprocess
import sys

import pytest

from conftest import machine_snapshot
from froxlor_fleet.model.validation import resolve
from systemd_lab import CFG, ROOT, UFW_FILES, systemd_lab

PROPOSAL = CFG.lab_dir / "froxlor-proposal"
USERDATA = "/var/www/froxlor/lib/userdata.inc.php"
SETTINGS_SUM = "mariadb -N -B -e 'CHECKSUM TABLE froxlor.panel_settings EXTENDED'"


@pytest.fixture(scope="module")
def slab():
    yield from systemd_lab("bookworm", pureftpd=False, froxlor=True)


def host(slab) -> str:
    return slab.host("bookworm").name


def discover(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "froxlor_fleet", "discover", "inventory.py",
                          *args], cwd=CFG.lab_dir, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    return res


def secrets_of(slab) -> list[str]:
    """The host's froxlor passwords (userdata.inc.php's nowdocs) and SMTP relay secret
    (froxlor's table), read by the test as root in the host, never by discover."""
    userdata = slab.read(host(slab), USERDATA).decode()
    passwords = re.findall(r"'password' => <<<'EOT'\n(.*?)\nEOT", userdata)
    smtp = slab.sh(host(slab), "mariadb -N -B -e \"SELECT value FROM froxlor.panel_settings "
                               "WHERE varname = 'mail_smtp_passwd'\"").stdout.strip()
    found = [*passwords, smtp]
    assert len(passwords) == 2 and all(len(s) >= 16 for s in found), found
    return found


def untouched(slab) -> tuple[dict[str, str], str]:
    """What a read-only run must leave as it was: UFW's files, froxlor's settings."""
    name = host(slab)
    files = {p: hashlib.sha256(slab.read(name, p)).hexdigest() for p in UFW_FILES}
    return files, slab.sh(name, SETTINGS_SUM).stdout


def test_01_froxlors_database_runs_as_set_up(slab) -> None:
    assert slab.deploy("-y").returncode == 0  # the lab's web + ftp data: UFW active
    name = host(slab)
    assert slab.sh(name, "systemctl is-active mariadb lab-froxlor-db").stdout.split() == \
        ["active", "active"]
    rows = slab.sh(name, "mariadb -N -B -e \"SELECT varname, value FROM froxlor.panel_settings "
                         "WHERE varname IN ('webserver', 'ftpserver')\"").stdout
    assert sorted(rows.splitlines()) == ["ftpserver\tproftpd", "webserver\tapache2"]
    listening = slab.sh(name, "ss -H -ltn 'sport = :3306'").stdout.split()
    assert {"0.0.0.0:3306", "*:3306"} & set(listening), listening  # public (* = both families)
    assert secrets_of(slab)


def test_02_froxlors_settings_are_evidence_and_conflicts(slab) -> None:
    name, before = host(slab), untouched(slab)
    res = discover()
    assert res.returncode == 1, res.stdout + res.stderr
    out, control = res.stdout, slab.info["control_ip"]
    # the host is alone in its groups: one group file, evidence lines named "<host>: ..."
    assert f"#   {name}: ftp: froxlor says ftpserver proftpd | the host runs 21/tcp proftpd on" in out
    assert f"#   {name}: ssh (always a role): froxlor says - | the host runs 22/tcp sshd" in out
    assert "froxlor says (not read" not in out
    for conflict in (
            "froxlor says web server apache2 but nothing listens on 80,443/tcp",
            "froxlor says DNS (Bind, bind_enable 1) but nothing listens on 53/tcp, 53/udp",
            "listens publicly but no source is known: mysql not proposed; UFW keeps blocking it",
            f"(froxlor's mysql_access_host names {control}: mysql_allowed_sources = "
            f"['{control}'] if they should reach it)"):
        assert conflict in out and conflict in res.stderr, (conflict, out)
    assert "froxlor's mysql_access_host: 127.0.0.1 (this host itself) left out" in out
    assert (f"froxlor's axfrservers names {slab.info['control_ip6']}, but dns is not proposed"
            in out)
    # froxlor saying web and DNS opens nothing: the roles come from what listens
    assert "froxlor_roles = ['ftp']\n" in out
    assert untouched(slab) == before


def test_03_mysql_open_to_anywhere_gets_froxlors_access_host(slab) -> None:
    name, control = host(slab), slab.info["control_ip"]
    shutil.rmtree(PROPOSAL, ignore_errors=True)
    slab.sh(name, "ufw allow 3306/tcp comment 'customers databases' >/dev/null")
    try:
        res = discover("--out", str(PROPOSAL))
        assert res.returncode == 1, res.stdout + res.stderr
        (written,) = PROPOSAL.rglob("*.py")  # one host: one file
        text = written.read_text()
        data = {k: v for k, v in runpy.run_path(str(written)).items() if not k.startswith("_")}
        assert data["froxlor_roles"] == ["ftp", "mysql"], text
        assert data["mysql_allowed_sources"] == [control], text
        assert (f"proposing mysql with froxlor's mysql_access_host ({control}) as "
                "mysql_allowed_sources") in res.stderr
        assert (f"#   {name}: mysql: froxlor says mysql_access_host 127.0.0.1,localhost,"
                f"{control} | the host runs 3306/tcp mariadbd on ") in text
        plan, problems = resolve(name, [("host data", data)])
        assert plan is not None, problems
    finally:
        slab.sh(name, "ufw delete allow 3306/tcp >/dev/null", check=False)
        shutil.rmtree(PROPOSAL, ignore_errors=True)


def test_04_the_sudo_user_reads_froxlor_only_with_sudo(slab) -> None:
    as_fleet = ["--ssh-user", "fleet"]
    res = discover(*as_fleet)
    assert res.returncode in (1, 2), res.stdout + res.stderr
    assert (f"froxlor's settings not read: {USERDATA} is not readable (the read needs root: "
            "--sudo)") in res.stdout, res.stdout + res.stderr
    res = discover(*as_fleet, "--sudo")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"{host(slab)}: ftp: froxlor says ftpserver proftpd | the host runs 21/tcp" in res.stdout


def test_05_no_password_and_no_secret_in_any_output(slab) -> None:
    secrets = secrets_of(slab)
    shutil.rmtree(PROPOSAL, ignore_errors=True)
    outputs = []
    try:
        for args in ([], ["--debug"], ["--out", str(PROPOSAL)], ["--ssh-user", "fleet", "--sudo"]):
            res = discover(*args)
            assert res.returncode in (1, 2), res.stdout + res.stderr
            outputs += [res.stdout, res.stderr]
        files = list(PROPOSAL.rglob("*"))
        assert files
        outputs += [p.read_text() for p in files if p.is_file()]
        leaked = [(i, s[:4]) for i, text in enumerate(outputs) for s in secrets if s in text]
        assert not leaked, leaked
        assert not [text for text in outputs if "mail_smtp" in text]
    finally:
        shutil.rmtree(PROPOSAL, ignore_errors=True)


def test_06_control_machine_untouched(slab) -> None:
    assert machine_snapshot() == slab.machine_before
