"""Data validation and role resolution: every bad input gives one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from froxlor_fleet.validation import FleetDataError, check_inventory
from helpers import make_inventory

ROOT = Path(__file__).resolve().parent.parent


def plans(groups, all_data=None, override=None):
    return check_inventory(make_inventory(groups, all_data, override))


def errors(groups, all_data=None) -> list[str]:
    with pytest.raises(FleetDataError) as info:
        plans(groups, all_data)
    return info.value.errors


def ports(plan) -> set[tuple[str, str, str | None, str]]:
    return {(r.dport, r.proto, r.source, r.label) for r in plan.rules}


def test_roles_are_the_union_of_every_group_and_host_data() -> None:
    result = plans({
        "web_servers": (["h1"], {"froxlor_roles": ["web"]}),
        "ftp_servers": (["h1"], {"froxlor_roles": ["ftp"]}),
        "mail_servers": ([("h1", {"froxlor_roles": ["mail"]})], {}),
    })
    assert result["h1"].roles == ("ftp", "imap", "smtp", "ssh", "web")


def test_host_without_roles_gets_ssh_only() -> None:
    plan = plans({"misc": (["h1"], {})})["h1"]
    assert plan.roles == ("ssh",) and ports(plan) == {("22", "tcp", None, "ssh")}


def test_catalog_ports() -> None:
    plan = plans({"all_roles": (["h1"], {
        "froxlor_roles": ["web", "ftp", "dns", "imap", "pop3", "smtp", "mysql"],
        "mysql_allowed_sources": ["10.0.0.0/8", "2001:db8::/32"],
        "ssh_port": 2222, "ssh_allowed_sources": ["192.0.2.7/32"]})})["h1"]
    assert ports(plan) == {
        ("80,443", "tcp", None, "web"), ("21", "tcp", None, "ftp"),
        ("49152:65534", "tcp", None, "ftp"), ("53", "tcp", None, "dns"), ("53", "udp", None, "dns"),
        ("143,993", "tcp", None, "imap"), ("110,995", "tcp", None, "pop3"),
        ("25,465,587", "tcp", None, "smtp"), ("3306", "tcp", "10.0.0.0/8", "mysql"),
        ("3306", "tcp", "2001:db8::/32", "mysql"), ("2222", "tcp", "192.0.2.7", "ssh"),
    }


def test_scalar_precedence_follows_pyinfra_last_group_wins() -> None:
    result = plans({
        "a": (["h1"], {"froxlor_roles": ["ftp"], "ftp_passive_ports": (40000, 40100)}),
        "b": (["h1"], {"ftp_passive_ports": (50000, 50100)}),
    }, all_data={"ftp_passive_ports": (60000, 60100)})
    assert result["h1"].passive_ports == (50000, 50100)


def test_extra_rules_concatenate_and_normalise() -> None:
    plan = plans({
        "a": (["h1"], {"firewall_extra_rules": [{"port": 8443, "comment": "panel"}]}),
        "b": (["h1"], {"firewall_extra_rules": [
            {"port": ["10050", "9100:9200"], "proto": "tcp", "sources": ["10.9.8.7/8"]}]}),
    })["h1"]
    assert ("8443", "tcp", None, "extra") in ports(plan)
    assert ("9100:9200,10050", "tcp", "10.0.0.0/8", "extra") in ports(plan)  # ufw's order
    assert [r.comment for r in plan.rules if r.dport == "8443"] == ["froxlor-fleet:extra panel"]


@pytest.mark.parametrize("data,key,needle", [
    ({"froxlor_roles": ["wbe"]}, "froxlor_roles", "unknown role (valid: dns, ftp, imap, mail"),
    ({"froxlor_roles": "web"}, "froxlor_roles", "must be a list of role names"),
    ({"ssh_port": 70000}, "ssh_port", "from 1 to 65535"),
    ({"ssh_port": 0}, "ssh_port", "from 1 to 65535"),
    ({"ssh_port": True}, "ssh_port", "whole number"),
    ({"froxlor_roles": ["ftp"], "ftp_passive_ports": (60000, 50000)}, "ftp_passive_ports", "inverted"),
    ({"froxlor_roles": ["ftp"], "ftp_passive_ports": (80, 2000)}, "ftp_passive_ports", "1024-65535"),
    ({"froxlor_roles": ["ftp"], "ftp_passive_ports": "49152-65534"}, "ftp_passive_ports", "(low, high)"),
    ({"froxlor_roles": ["ftp"], "ssh_port": 50000}, "ftp_passive_ports", "overlaps port 50000/tcp opened by 'ssh'"),
    ({"froxlor_roles": ["ftp"], "firewall_extra_rules": [{"port": "60000:60010"}]},
     "ftp_passive_ports", "overlaps port 60000:60010/tcp opened by 'extra'"),
    ({"ssh_allowed_sources": ["10.0.0.300/8"]}, "ssh_allowed_sources", "not a valid IP address"),
    ({"ssh_allowed_sources": "10.0.0.0/8"}, "ssh_allowed_sources", "must be a list"),
    ({"froxlor_roles": ["mysql"]}, "mysql_allowed_sources", "required when 'mysql' is a role"),
    ({"froxlor_roles": ["mysql"], "mysql_allowed_sources": []}, "mysql_allowed_sources", "required"),
    ({"firewall_default_incoming": "drop"}, "firewall_default_incoming", "one of allow, deny, reject"),
    ({"firewall_logging": "verbose"}, "firewall_logging", "one of off, low"),
    ({"firewall_enabled": "yes"}, "firewall_enabled", "True or False"),
    ({"firewall_purge_unmanaged": 1}, "firewall_purge_unmanaged", "True or False"),
    ({"ftp_masquerade_address": "not a host!"}, "ftp_masquerade_address", "IP address or a DNS name"),
    ({"firewall_extra_rules": [{"port": 8080, "proto": "sctp"}]}, "firewall_extra_rules", "proto must be"),
    ({"firewall_extra_rules": [{"port": 8080, "action": "deny"}]}, "firewall_extra_rules", "unknown field(s) action"),
    ({"firewall_extra_rules": [{"port": list(range(1000, 1016))}]}, "firewall_extra_rules", "at most 15 ports"),
    ({"firewall_extra_rules": [{"port": "9000:8000"}]}, "firewall_extra_rules", "low < high"),
    ({"firewall_extra_rules": [{"port": 8080, "comment": "a\nb"}]}, "firewall_extra_rules", "one line"),
    ({"firewall_extra_rules": "8080"}, "firewall_extra_rules", "must be a list of rules"),
    ({"firewall_extra_rules": [8080]}, "firewall_extra_rules", "must be a dict"),
])
def test_each_bad_value_gives_one_line_naming_host_key_and_value(data, key, needle) -> None:
    found = errors({"web_servers": (["web1"], data)})
    assert len(found) == 1, found
    line = found[0]
    assert "\n" not in line
    assert line.startswith("host web1") and f": {key} = " in line
    assert needle in line


def test_all_problems_of_all_hosts_are_reported_together() -> None:
    found = errors({
        "web_servers": (["web1", "web2"], {"froxlor_roles": ["wbe"]}),
        "db_servers": (["db1"], {"froxlor_roles": ["mysql"]}),
    })
    assert [line.split(":")[0:2] for line in found] == [
        ["host web1 (group web_servers)", " froxlor_roles = 'wbe'"],
        ["host web2 (group web_servers)", " froxlor_roles = 'wbe'"],
        ["host db1", " mysql_allowed_sources = None"]]


def test_duplicate_slot_is_kept_once() -> None:
    plan = plans({"a": (["h1"], {"froxlor_roles": ["web"],
                                 "firewall_extra_rules": [{"port": [443, 80]}]})})["h1"]
    assert [r.label for r in plan.rules if r.dport == "80,443"] == ["web"]


def run_pyinfra(tmp_path: Path, group_data: str) -> subprocess.CompletedProcess:
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "web_servers.py").write_text(textwrap.dedent(group_data))
    (tmp_path / "inventory.py").write_text(
        "from froxlor_fleet.fleetcheck import check_fleet\n"
        "web_servers = ['@local']\ncheck_fleet(__file__)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py", str(ROOT / "deploy.py"),
                           "--dry"], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_stops_before_connecting_with_one_line_per_problem(tmp_path: Path) -> None:
    res = run_pyinfra(tmp_path, 'froxlor_roles = ["web", "wbe"]\nssh_port = "22x"\n')
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "Connecting to hosts" not in out and "Connected" not in out
    assert "Traceback" not in out
    assert "host @local (group web_servers): froxlor_roles = 'wbe': unknown role" in out
    assert "host @local (group web_servers): ssh_port = '22x': a port must be" in out


def test_cli_accepts_good_data_and_plans_without_touching(tmp_path: Path) -> None:
    res = run_pyinfra(tmp_path, 'froxlor_roles = ["web"]\nfirewall_enabled = False\n')
    out = res.stdout + res.stderr
    assert "fleet data is invalid" not in out
    assert "Connected" in out, out
