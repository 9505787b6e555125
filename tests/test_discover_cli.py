"""``froxlor-fleet discover`` end to end in a subprocess, as test_cli.py runs the audit: hosts
``@canned/<name>`` answer the one remote command with captured output (tests/fakeconn),
or are SSH hosts on a closed 127.0.0.1 port. Nothing runs on this machine."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from froxlor_fleet.audit.fact import LISTENING_SECTION
from froxlor_fleet.model.catalog import DEFAULTS
from froxlor_fleet.model.validation import resolve
from helpers import build_fact
from test_audit import tuple_line
from test_cli import FTP, SS_WEB, WEB_OK, Fleet, closed_port

SECRETS = ("S3cret-root-pw", "S3cret-admin-pw", "S3cret-ftp-user-pw", "S3cret-near-miss")
FOREIGN = f"""\
mysql_root_password = "{SECRETS[0]}"
froxlor_admin_password = "{SECRETS[1]}"
ftp_users = [{{"name": "shop", "password": "{SECRETS[2]}"}}]
ssh_allowd_sources = ["{SECRETS[3]}"]
"""
JAVA = 'tcp LISTEN 0 50 *:8080 *:* users:(("java",pid=9,fd=40))'
# web2 runs a hand-made rule for a java service besides the converged web+ftp rules
WEB_JAVA = (build_fact({"scenario": "converged-web-ftp", "fragment": None,
                        "rules4": [line for line in (Path(__file__).parent / "fixtures" / "ufw-0.36.2"
                                                     / "converged-web-ftp" / "user.rules")
                                   .read_text().splitlines() if line.startswith("### tuple ###")]
                        + [tuple_line("allow", "8080", "shop backend")]})
            + FTP + [LISTENING_SECTION, *SS_WEB, JAVA])


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    """web1 and web2 in web_servers and ftp_servers, converged, ProFTPd on 21, nginx idle."""
    return Fleet(tmp_path)


def discover(fleet: Fleet, *args: str):
    return fleet.run("discover", "inventory.py", *args)  # Fleet.run: never a traceback


def data_of(path: Path) -> dict:
    return {k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("_")}


def test_help_lists_the_exit_status(fleet: Fleet) -> None:
    res = fleet.run("discover", "--help")
    assert res.code == 0 and "Exit status:" in res.stdout and "--out DIR" in res.stdout
    assert "discover" in fleet.run("--help").stdout


def test_prints_the_proposal_reading_each_host_with_one_command(fleet: Fleet) -> None:
    res = discover(fleet)
    assert res.code == 1, res.out  # conflicts to review: UFW admits 80,443, nothing listens
    commands = fleet.commands()
    assert sorted(c["host"] for c in commands) == ["@canned/web1", "@canned/web2"]
    assert all("; ss -H -ltnup 2>/dev/null || true ; echo ':::froxlor-fleet:froxlor'; " in c["command"]
               and c["command"].endswith("else echo 'reason froxlor not installed'; fi")
               for c in commands)
    # both groups hold both hosts, which agree: one group file (the first by name)
    assert res.stdout.startswith("# ==> group_data/ftp_servers.py <==\n# Proposed by "
                                 "`froxlor-fleet discover` for group ftp_servers "
                                 "(@canned/web1, @canned/web2): review before use.")
    assert "froxlor_roles = ['ftp']\n" in res.stdout
    assert "ftp_passive_ports = (49152, 65534)\n" in res.stdout
    assert ("froxlor-fleet discover: @canned/web1: UFW admits 80,443/tcp (web's ports) but "
            "nothing listens there: web not proposed") in res.stderr
    assert "2 hosts read, 0 not, 2 conflicts to review" in res.stderr


def test_out_writes_files_the_deploys_validation_and_pyinfra_accept(fleet: Fleet) -> None:
    fleet.hosts["web2"] = {"lines": WEB_JAVA}
    res = discover(fleet, "--out", "proposal")
    assert res.code == 1, res.out
    web1 = fleet.path / "proposal" / "host_data" / "@canned%2Fweb1.py"
    web2 = fleet.path / "proposal" / "host_data" / "@canned%2Fweb2.py"
    assert res.stdout.splitlines() == [f"wrote {Path('proposal') / 'host_data' / web1.name}",
                                       f"wrote {Path('proposal') / 'host_data' / web2.name}"]
    assert data_of(web1) == {"froxlor_roles": ["ftp"], "ftp_passive_ports": (49152, 65534)}
    assert data_of(web2) == {"froxlor_roles": ["ftp"], "ftp_passive_ports": (49152, 65534),
                             "firewall_extra_rules": [{"port": 8080, "comment": "shop backend"}]}
    for path in (web1, web2):
        data = data_of(path)
        assert set(data) <= set(DEFAULTS)
        assert resolve("h", [("host data", data)])[1] == []
    # as documented: the inventory takes each host's file with host_data()
    (fleet.path / "group_data" / "web_servers.py").unlink()
    (fleet.path / "group_data" / "ftp_servers.py").unlink()
    (fleet.path / "inventory.py").write_text(
        "from froxlor_fleet.discover import host_data\n"
        "web_servers = [(h, host_data('proposal/host_data', h))\n"
        "               for h in ('@canned/web1', '@canned/web2')]\n")
    audited = fleet.audit("--json")  # pyinfra loads the inventory; the audit validates
    assert "data_error" not in {f["kind"] for f in audited.doc["findings"]}, audited.out
    assert [h["roles"] for h in audited.doc["hosts"]] == [["ftp", "ssh"], ["ftp", "ssh"]]
    # the files are never overwritten: a second run writes nothing
    again = discover(fleet, "--out", "proposal")
    assert again.code == 2 and "2 of the files exist already, nothing written" in again.stderr


def test_group_files_load_with_pyinfras_group_data_option(fleet: Fleet) -> None:
    assert discover(fleet, "--out", "proposal").code == 1
    assert sorted(p.name for p in (fleet.path / "proposal").rglob("*.py")) == ["ftp_servers.py"]
    for name in ("web_servers", "ftp_servers"):
        (fleet.path / "group_data" / f"{name}.py").unlink()
    audited = fleet.audit("--json", "--group-data", "proposal/group_data")
    assert "data_error" not in {f["kind"] for f in audited.doc["findings"]}, audited.out
    assert [h["roles"] for h in audited.doc["hosts"]] == [["ftp", "ssh"], ["ftp", "ssh"]]
    assert {h["passive_ports"]["wanted"] for h in audited.doc["hosts"]} == {"49152:65534"}


def test_an_unreachable_host_is_one_line_and_the_others_are_proposed(fleet: Fleet) -> None:
    fleet.hosts["web2"] = {"refuse": "Could not connect (refused)"}
    res = discover(fleet)
    assert res.code == 2, res.out
    assert "froxlor-fleet discover: @canned/web2: unreachable: Could not connect (refused)\n" \
        in res.stderr
    # web2 was not read: no group file for its groups, web1 gets its own file
    assert res.stdout.startswith("# ==> host_data/@canned%2Fweb1.py <==")
    assert "1 host read, 1 not" in res.stderr
    fleet.hosts["web2"] = {"fail": "sh: 1: ss: Permission denied"}
    res = discover(fleet)
    assert res.code == 2 and "@canned/web2: unreachable: connected, but could not read its " \
        "state" in res.stderr


def test_every_host_unreachable_over_real_ssh_is_exit_2_not_a_traceback(fleet: Fleet) -> None:
    port = closed_port()
    (fleet.path / "inventory.py").write_text(
        f"web_servers = [('web1', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}}})]\n")
    res = discover(fleet, "--out", "proposal")
    assert res.code == 2 and res.stdout == ""
    assert res.stderr.startswith("froxlor-fleet discover: web1: unreachable: Could not connect")
    assert not (fleet.path / "proposal").exists()


def test_inventory_and_limit_problems_are_one_line_each(fleet: Fleet) -> None:
    res = fleet.run("discover", "no-such-inventory.py")
    assert res.code == 2 and "no inventory file 'no-such-inventory.py'" in res.stderr
    res = discover(fleet, "--limit", "nosuch")
    assert res.code == 2 and "--limit 'nosuch' matches no host" in res.stderr
    (fleet.path / "group_data" / "web_servers.py").write_text("froxlor_roles = [\n")
    res = discover(fleet)
    assert res.code == 2 and "web_servers.py:1:" in res.stderr
    assert fleet.run("discover").code == 2  # missing INVENTORY: a usage error


def test_a_value_of_a_key_that_is_not_ours_is_never_printed(fleet: Fleet) -> None:
    fleet.group_data("group_data", {"all": FOREIGN, "web_servers": FOREIGN})
    outputs = []
    for args in ([], ["--debug"], ["--out", "proposal"], ["--out", "again", "--debug"]):
        res = discover(fleet, *args)
        assert res.code == 1, res.out
        outputs.append(res.out)
    outputs += [p.read_text() for p in fleet.path.glob("*/*/*.py")]
    assert len(outputs) == 6
    assert not [text for text in outputs for secret in SECRETS if secret in text]
    # the proposal holds our keys only (none of those, not even the near miss)
    assert "mysql_root_password" not in "".join(outputs)
    assert "ssh_allowd_sources" not in "".join(outputs)


def test_limit_reads_only_the_targeted_hosts(fleet: Fleet) -> None:
    res = discover(fleet, "--limit", "@canned/web1")
    assert res.code == 1, res.out
    assert [c["host"] for c in fleet.commands()] == ["@canned/web1"]
    # web2 not read: its groups get no file, web1 its own
    assert res.stdout.startswith("# ==> host_data/@canned%2Fweb1.py <==")
    assert WEB_OK  # the canned state of both hosts (test_cli)


FROXLOR_SECRET = "Smtp-S3cret-" + "9f1c2e"
# web1 as a froxlor host prints it (discover.fact's froxlor section), from a client that
# printed a secret row too: froxlor's settings are evidence, the secret is dropped.
WEB_FROXLOR = [*WEB_JAVA, ":::froxlor-fleet:froxlor", "install /var/www/froxlor",
               "database froxlor", "system\tftpserver\tproftpd", "system\twebserver\tnginx",
               f"system\tmail_smtp_passwd\t{FROXLOR_SECRET}",
               "system\tmysql_access_host\t127.0.0.1,localhost,192.0.2.10"]


def test_froxlors_settings_are_evidence_and_no_secret_is_printed(fleet: Fleet) -> None:
    fleet.hosts["web1"] = {"lines": WEB_FROXLOR}
    fleet.hosts["web2"] = {"lines": [*WEB_JAVA, ":::froxlor-fleet:froxlor",
                                     "reason mysql: access denied (the read needs root: --sudo)"]}
    outputs = []
    for args in ([], ["--out", "proposal"]):
        res = discover(fleet, *args)
        assert res.code == 1, res.out
        outputs.append(res.out)
    outputs += [p.read_text() for p in (fleet.path / "proposal").rglob("*.py")]
    (written,) = (fleet.path / "proposal").rglob("*.py")  # they agree: one group file
    text = written.read_text()
    assert ("#   @canned/web1: ftp: froxlor says ftpserver proftpd | the host runs 21/tcp "
            "proftpd on *") in text
    assert "#   @canned/web2: ftp: froxlor says (not read) | the host runs 21/tcp" in text
    assert ("#   @canned/web2: froxlor's settings not read: mysql: access denied (the read "
            "needs root: --sudo)") in text
    assert "froxlor-fleet discover: @canned/web1: froxlor says web server nginx but nothing " \
        "listens on 80,443/tcp" in outputs[0]
    assert not [out for out in outputs if FROXLOR_SECRET in out or "mail_smtp" in out]
