"""Data validation and role resolution: every bad input gives one clear line."""

from __future__ import annotations

import re

import pytest

from froxlor_fleet.model.validation import FleetDataError, check_inventory
from helpers import make_inventory


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
    ({"froxlor_roles": ["wbe"]}, "froxlor_roles", "unknown role, did you mean 'web'?"),
    ({"froxlor_roles": "web"}, "froxlor_roles", "must be a list of role names"),
    ({"ssh_port": 70000}, "ssh_port", "from 1 to 65535"),
    ({"ssh_port": 0}, "ssh_port", "from 1 to 65535"),
    ({"ssh_port": True}, "ssh_port", "whole number"),
    ({"froxlor_roles": ["ftp"], "ftp_passive_ports": (60000, 50000)}, "ftp_passive_ports", "inverted"),
    ({"froxlor_roles": ["ftp"], "ftp_passive_ports": (80, 2000)}, "ftp_passive_ports", "1024-65535"),
    ({"froxlor_roles": ["ftp"], "ftp_passive_ports": "49152-65534"}, "ftp_passive_ports",
     "(low, high) pair or a 'low:high' string"),
    ({"froxlor_roles": ["ftp"], "ssh_port": 50000}, "ftp_passive_ports",
     "overlaps port 50000/tcp opened by 'ssh'"),
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
    ({"firewall_extra_rules": [{"port": 8080, "verdict": "deny"}]}, "firewall_extra_rules",
     "unknown field(s) verdict"),
    ({"firewall_extra_rules": [{"port": 8080, "action": "drop"}]}, "firewall_extra_rules",
     "action must be one of allow, deny, reject, limit"),
    ({"firewall_extra_rules": [{"port": 8080, "action": None}]}, "firewall_extra_rules", "action must be"),
    ({"ssh_rate_limit": "yes"}, "ssh_rate_limit", "True or False"),
    ({"web_http3": 1}, "web_http3", "True or False"),
    ({"firewall_extra_rules": [{"port": list(range(1000, 1016))}]}, "firewall_extra_rules",
     "at most 15 ports"),
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


@pytest.mark.parametrize("role,meant", [("wbe", "web"), ("mial", "mail"), ("ftpd", "ftp"),
                                        ("myslq", "mysql"), ("Web", "web")])
def test_an_unknown_role_suggests_the_nearest(role, meant) -> None:
    line = one_error({"froxlor_roles": [role]})
    assert f"froxlor_roles = {role!r}: unknown role, did you mean {meant!r}?" in line


def test_an_unknown_role_far_from_any_lists_the_valid_ones() -> None:
    line = one_error({"froxlor_roles": ["webmail-proxy"]})
    assert "did you mean" not in line and "valid: dns, ftp, imap, mail" in line


def test_the_same_problem_of_many_hosts_is_one_line_naming_them() -> None:
    hosts = [f"web{i}" for i in range(1, 101)]
    with pytest.raises(FleetDataError) as info:
        plans({"web_servers": (hosts, {"froxlor_roles": ["wbe"]}),
               "db_servers": (["db1"], {"froxlor_roles": ["mysql"]})})
    assert len(info.value.errors) == 101  # per host, for the audit's per-host view
    message = str(info.value).splitlines()
    assert message[0] == "fleet data is invalid, no host was touched (2 problems):"
    assert message[1] == ("  hosts web1, web2, web3 and 97 more (100 hosts) (group web_servers): "
                          "froxlor_roles = 'wbe': unknown role, did you mean 'web'?")
    assert message[2].startswith("  host db1: mysql_allowed_sources = None: required")
    assert len(message) == 3


def test_one_problem_is_one_problem() -> None:
    with pytest.raises(FleetDataError) as info:
        plans({"web_servers": (["web1"], {"froxlor_roles": ["wbe"]})})
    assert str(info.value).startswith("fleet data is invalid, no host was touched (1 problem):")


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


# --- what ufw and ProFTPd accept (issue 9), one line per refused value ----------------

def one_error(data: dict, group: str = "web_servers") -> str:
    found = errors({group: (["web1"], data)})
    assert len(found) == 1, found
    assert "\n" not in found[0] and found[0].startswith("host web1")
    return found[0]


def plan_of(data: dict):
    return plans({"web_servers": (["web1"], data)})["web1"]


def extra(**rule) -> dict:
    return {"firewall_extra_rules": [{"port": 8080, **rule}]}


@pytest.mark.parametrize("comment,needle", [
    ("it's mine", "ufw refuses comments containing \"'\""),  # ufw parser.py
    ("abc\u202edef", "printable"),  # bidi override (Cf)
    ("zero\u200bwidth", "printable"),  # zero width space (Cf)
    ("line\u2028sep", "printable"),  # Zl
    ("para\u2029sep", "printable"),  # Zp
    ("tab\there", "printable"),  # Cc
    ("nul\x00", "printable"),
    ("del\x7f", "printable"),
    ("nbsp\u00a0here", "printable"),  # Zs other than the ASCII space
    ("lone \ud800 surrogate", "printable"),  # ufw's hex_encode would drop it silently
    ("private \ue000 use", "printable"),  # Co
    ("x" * 121, "at most 120"),
])
def test_comment_characters_ufw_refuses_or_mangles_are_refused(comment, needle) -> None:
    line = one_error(extra(comment=comment))
    assert ": firewall_extra_rules = " in line and needle in line


@pytest.mark.parametrize("comment", [
    "ümlaut 🔥 中文 ∞", '$(reboot) `id` ; rm -rf / # "quoted" \\ back', "x" * 120,
    "comment", "in", "log", "  padded  ", "-rf --help", "%s %(x)s {x}",
])
def test_printable_comments_are_kept(comment) -> None:
    [rule] = [r for r in plan_of(extra(comment=comment)).rules if r.label == "extra"]
    assert rule.comment == "froxlor-fleet:extra " + comment.strip()


@pytest.mark.parametrize("key", ["ssh_allowed_sources", "mysql_allowed_sources", "extra"])
@pytest.mark.parametrize("value", ["fe80::1%eth0", "fe80::1%eth0/64",
                                   "fe80::1%eth0\nAllowOverwrite on", "fe80::1%25"])
def test_ipv6_scope_ids_are_refused_in_sources(key, value) -> None:
    data = {"froxlor_roles": ["mysql"], "mysql_allowed_sources": ["10.0.0.0/8"]}
    if key == "extra":
        data.update(extra(sources=[value]))
        key = "firewall_extra_rules"
    else:
        data[key] = [value]
    line = one_error(data)
    assert f": {key} = " in line and "scope id" in line


@pytest.mark.parametrize("value,needle", [
    ("fe80::1%eth0", "scope id"),
    ("fe80::1%eth0\nAllowOverwrite on", "scope id"),  # would smuggle a directive
    ("ftp.example.net\n", "IP address or a DNS name"),
    ("ftp.example.net\nAllowOverwrite on", "IP address or a DNS name"),
    ("010.0.0.1", "numeric"),  # getaddrinfo reads it as 8.0.0.1 (octal)
    ("1234", "numeric"),  # ... as 0.0.4.210
    ("10.1", "numeric"),  # ... as 10.0.0.1
    ("0x7f.1", "numeric"),  # ... as 127.0.0.1
    ("a.0x1f", "numeric"),
    ("1.2.3.4.", "numeric"),
    ("-bad.example", "IP address or a DNS name"),
    ("under_score.example", "IP address or a DNS name"),
    ("a" * 64 + ".example", "IP address or a DNS name"),
    (".".join(["a" * 63] * 4), "IP address or a DNS name"),  # 255 characters
    ("", "IP address or a DNS name"),
    ("10.0.0.1/24", "IP address or a DNS name"),
])
def test_masquerade_addresses_proftpd_would_misread_are_refused(value, needle) -> None:
    line = one_error({"froxlor_roles": ["ftp"], "ftp_masquerade_address": value})
    assert ": ftp_masquerade_address = " in line and needle in line


@pytest.mark.parametrize("value,stored", [
    ("203.0.113.10", "203.0.113.10"), ("ftp.example.net", "ftp.example.net"),
    ("ftp.example.net.", "ftp.example.net."), ("FTP.Example.NET", "FTP.Example.NET"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"), ("localhost", "localhost"),
    ("2001:DB8::10", "2001:db8::10"), ("::ffff:192.0.2.7", "::ffff:192.0.2.7"),
    ("1a.example", "1a.example"), ("example.1a", "example.1a"),
    (".".join(["a" * 63] * 3 + ["a" * 61]), ".".join(["a" * 63] * 3 + ["a" * 61])),
])
def test_masquerade_addresses_proftpd_reads_as_written_are_kept(value, stored) -> None:
    assert plan_of({"froxlor_roles": ["ftp"], "ftp_masquerade_address": value}
                   ).masquerade_address == stored


@pytest.mark.parametrize("value,needle", [
    ((50000, 50000), "low < high"),  # ProFTPd: "min port must be less than max port"
    ((1023, 2000), "1024-65535"),
    ((1024, 65536), "1024-65535"),
    ((True, 2000), "(low, high)"),
    ((50000.0, 50100), "(low, high)"),
])
def test_passive_ranges_proftpd_refuses_are_refused(value, needle) -> None:
    line = one_error({"froxlor_roles": ["ftp"], "ftp_passive_ports": value})
    assert ": ftp_passive_ports = " in line and needle in line


@pytest.mark.parametrize("value", ["50000:50100", " 50000:50100", "50000:50100:1", "50000:",
                                   "5e4:50100", "50000:٥٠١٠٠"])
def test_passive_range_as_a_low_high_string(value) -> None:
    """pyinfra's --data passes strings: ``--data ftp_passive_ports=50000:50100``."""
    data = {"froxlor_roles": ["ftp"], "ftp_passive_ports": value}
    if value == "50000:50100":
        assert plan_of(data).passive_ports == (50000, 50100)
    else:
        assert ": ftp_passive_ports = " in one_error(data)


def test_passive_range_string_follows_the_same_rules() -> None:
    assert "inverted" in one_error({"froxlor_roles": ["ftp"], "ftp_passive_ports": "50100:50000"})


def test_passive_range_bounds_proftpd_accepts() -> None:
    for low, high in ((1024, 1025), (65534, 65535), (1024, 65535)):
        plan = plan_of({"froxlor_roles": ["ftp"], "ftp_passive_ports": [low, high]})
        assert plan.passive_ports == (low, high)


@pytest.mark.parametrize("value,stored", [
    ("10.9.8.7/8", "10.0.0.0/8"),  # ufw zeroes v4 host bits (util._address4_to_network)
    ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),  # dotted netmask -> cidr
    ("192.0.2.7/32", "192.0.2.7"), ("192.0.2.7/255.255.255.255", "192.0.2.7"),
    ("2001:db8::1/32", "2001:db8::1/32"),  # ... but keeps v6 host bits
    ("2001:DB8::/32", "2001:db8::/32"), ("2001:db8::1/128", "2001:db8::1"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001/127", "2001:db8::1/127"),  # 43 characters
    ("::1.2.3.4", "::1.2.3.4"),  # glibc's inet_ntop keeps the dotted tail
    ("::", "::"), ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
    ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),  # equal runs: the first one is compressed
    ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),  # a single 0 is never compressed
    ("1::1.2.3.4", "1::102:304"),
])
def test_sources_are_normalised_exactly_as_ufw_stores_them(value, stored) -> None:
    plan = plan_of({"ssh_allowed_sources": [value]})
    assert [r.source for r in plan.rules if r.label == "ssh"] == [stored]


@pytest.mark.parametrize("value,needle", [
    ("::ffff:192.0.2.7", "IPv4-mapped"), ("::ffff:192.0.2.0/120", "IPv4-mapped"),
    ("10.0.0.0/08", "leading zero"), ("2001:db8::/032", "leading zero"),
    ("10.0.0.0/255.0.255.0", "contiguous"), ("10.0.0.0/0.0.0.255", "contiguous"),
    ("10.0.0.0/255.000.0.0", "contiguous"),
    (" 10.0.0.1", "whitespace"), ("10.0.0.0/8\n", "whitespace"),
    ("10.0.0.1\n", "not a valid IP address"),
    ("2001:0db8:0000:0000:0000:0000:255.255.255.255", "43 characters"),  # ufw's length cap
    ("10.0.0.0/33", "not a valid IP address"), ("2001:db8::/129", "not a valid IP address"),
    ("any", "anywhere"), ("ANY", "anywhere"), ("", "not a valid IP address"),
    ("1.2.3", "not a valid IP address"), ("010.0.0.1", "not a valid IP address"),
])
def test_sources_ufw_refuses_or_would_misstore_are_refused(value, needle) -> None:
    line = one_error({"ssh_allowed_sources": [value]})
    assert ": ssh_allowed_sources = " in line and needle in line


SECRET = "s3cr3t-Pa55w0rd"


@pytest.mark.parametrize("where", ["group", "host", "all", "override"])
@pytest.mark.parametrize("key,closest", [
    ("froxlor_role", "froxlor_roles"),
    ("firewall_extra_rule", "firewall_extra_rules"),
    ("ssh_allowed_source", "ssh_allowed_sources"),
    ("ssh_allowd_sources", "ssh_allowed_sources"),
    ("ssh_allowedsources", "ssh_allowed_sources"),
    ("msql_allowed_sources", "mysql_allowed_sources"),
    ("mysql_allowed_source", "mysql_allowed_sources"),
    ("ftp_passive_port", "ftp_passive_ports"),
    ("firewall_default_incomming", "firewall_default_incoming"),
    ("firewal_purge_unmanaged", "firewall_purge_unmanaged"),
    ("firewall_purge_unmanage", "firewall_purge_unmanaged"),
    ("Froxlor_Roles", "froxlor_roles"),
    ("web_htttp3", "web_http3"),
    ("web_http_3", "web_http3"),
    ("ssh_ratelimit", "ssh_rate_limit"),
])
def test_a_near_miss_of_one_of_our_keys_names_the_key_and_never_its_value(
        where, key, closest) -> None:
    data = {key: [SECRET]}
    groups = {"web_servers": (["web1"], data if where == "group" else {})}
    if where == "host":
        groups = {"web_servers": ([("web1", data)], {})}
    with pytest.raises(FleetDataError) as info:
        plans(groups, all_data=data if where == "all" else None,
              override=data if where == "override" else None)
    [line] = info.value.errors
    origin = {"group": " (group web_servers)", "host": "", "all": " (group all)",
              "override": " (--data)"}[where]
    assert line.startswith(f"host web1{origin}: {key}: unknown key, did you mean '{closest}'?")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("key", [
    # other deploys' keys, sharing a prefix with ours but not a near miss of one
    "mysql_root_password", "froxlor_admin_password", "froxlor_version", "ftp_users",
    "firewall_backend", "ssh_allowed_users", "mysql_zzz", "firewall_purge",
    # pyinfra's own connector keys are never a near miss, however close
    "ssh_user", "ssh_key", "ssh_password", "ssh_hostname", "ssh_key_password",
    # helper variables and anything else
    "_sudo", "_mysql_allowed_source", "my_thing", "ftpish",
])
def test_keys_that_are_not_ours_are_ignored_and_their_values_never_shown(key) -> None:
    plan = plan_of({key: SECRET, "ssh_port": 22})
    assert plan.roles == ("ssh",)


def test_near_miss_of_a_short_key_allows_one_edit_only() -> None:
    """ssh_port has 8 characters: two edits reach other deploys' words (ssh_host)."""
    assert plan_of({"ssh_host": "jump.example.net"}).ssh_port == 22
    assert "did you mean 'ssh_port'?" in one_error({"ssh_prot": 2222})


@pytest.mark.parametrize("value", ["0.0.0.0/0", "::/0", "10.1.2.3/0", "0.0.0.0/0.0.0.0",
                                   "2001:db8::1/0"])
def test_anywhere_written_as_a_network_is_refused_with_what_to_write(value) -> None:
    line = one_error({"ssh_allowed_sources": [value]})
    assert "anywhere" in line and "leave the sources empty" in line
    line = one_error({"firewall_extra_rules": [{"port": 8080, "action": "deny",
                                               "sources": [value]}]})
    assert "anywhere" in line


@pytest.mark.parametrize("data,key", [
    ({"froxlor_roles": [["web"]]}, "froxlor_roles"),
    ({"froxlor_roles": [{"web": 1}]}, "froxlor_roles"),
    ({"froxlor_roles": [{"web"}]}, "froxlor_roles"),
    ({"froxlor_roles": {"web": 1}}, "froxlor_roles"),
    ({"ssh_allowed_sources": [["10.0.0.1"]]}, "ssh_allowed_sources"),
    ({"ssh_allowed_sources": {"10.0.0.1": 1}}, "ssh_allowed_sources"),
    ({"ssh_port": [22]}, "ssh_port"),
    ({"ssh_port": "²"}, "ssh_port"),  # str.isdigit() is true, int() fails
    ({"ssh_port": "٢٢"}, "ssh_port"),  # Arabic-Indic digits: int() would read 22
    ({"froxlor_roles": ["ftp"], "ftp_passive_ports": [[50000], [50100]]}, "ftp_passive_ports"),
    ({"froxlor_roles": ["ftp"], "ftp_masquerade_address": ["a.example"]}, "ftp_masquerade_address"),
    ({"firewall_default_incoming": ["deny"]}, "firewall_default_incoming"),
    ({"firewall_logging": {"low": 1}}, "firewall_logging"),
    ({"firewall_enabled": [True]}, "firewall_enabled"),
    ({"firewall_lockout_guard": "no"}, "firewall_lockout_guard"),
    ({"firewall_extra_rules": [{"port": [[80]]}]}, "firewall_extra_rules"),
    ({"firewall_extra_rules": [{"port": {80: 1}}]}, "firewall_extra_rules"),
    ({"firewall_extra_rules": [{"port": 80, "proto": ["tcp"]}]}, "firewall_extra_rules"),
    ({"firewall_extra_rules": [{"port": 80, "proto": {"tcp": 1}}]}, "firewall_extra_rules"),
    ({"firewall_extra_rules": [{"port": 80, "sources": [["10.0.0.1"]]}]}, "firewall_extra_rules"),
    ({"firewall_extra_rules": [{"port": 80, "comment": ["x"]}]}, "firewall_extra_rules"),
    ({"firewall_extra_rules": [{("port",): 80}]}, "firewall_extra_rules"),
    ({"firewall_extra_rules": [{"port": "٨٠"}]}, "firewall_extra_rules"),
    ({"firewall_extra_rules": [[{"port": 80}]]}, "firewall_extra_rules"),
])
def test_nested_and_unhashable_values_give_one_line(data, key) -> None:
    line = one_error(data)
    assert f": {key} = " in line


def test_a_value_whose_repr_fails_still_gives_one_line() -> None:
    class Odd:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    class Multiline:
        def __repr__(self) -> str:
            return "two\nlines"

    assert "ssh_port = <" in one_error({"ssh_port": Odd()})
    assert "two\\nlines" in one_error({"ssh_port": Multiline()})


def test_lockout_guard_is_read_into_the_plan() -> None:
    assert plan_of({}).lockout_guard is True
    assert plan_of({"firewall_lockout_guard": False}).lockout_guard is False


# --- one desired-state model (issue 14) -------------------------------------------------

def test_the_model_lives_in_plan_and_validation_re_exports_it() -> None:
    from froxlor_fleet.model import plan, validation

    for name in ("RuleSpec", "HostPlan", "ufw_port_sort", "port_weight", "MAX_PORT_WEIGHT"):
        assert getattr(validation, name) is getattr(plan, name), name
    assert "validation" not in plan.__doc__.split("\n")[0]


def test_what_the_host_program_shares_is_written_once_in_its_model() -> None:
    """The marker, port spans and the ufw argv exist once: in ``remote/ufwmodel.py``,
    which ships to the hosts; the control side imports them (issue 22: copies drifted,
    and the conformance tests exercised a copy that never shipped)."""
    import inspect

    from froxlor_fleet.model import catalog, plan, validation
    from froxlor_fleet.remote import ufwmodel

    assert validation.port_span is ufwmodel.port_span and not hasattr(plan, "port_span")
    assert catalog.MARKER == ufwmodel.MARKER
    assert not re.search(r"^MARKER\s*=", inspect.getsource(catalog), re.MULTILINE)
    assert not hasattr(plan.RuleSpec, "ufw_args")  # Want.ufw_args is the one that runs


def test_defaults_are_written_only_in_the_catalog() -> None:
    import dataclasses
    import inspect

    from froxlor_fleet.model import validation
    from froxlor_fleet.model.catalog import DEFAULTS
    from froxlor_fleet.model.plan import HostPlan

    field_keys = {"incoming": "firewall_default_incoming", "outgoing": "firewall_default_outgoing",
                  "logging": "firewall_logging", "enabled": "firewall_enabled",
                  "purge_unmanaged": "firewall_purge_unmanaged", "ssh_port": "ssh_port",
                  "lockout_guard": "firewall_lockout_guard",
                  "masquerade_address": "ftp_masquerade_address"}
    for f in dataclasses.fields(HostPlan):
        if f.name in field_keys:
            assert f.default == DEFAULTS[field_keys[f.name]], f.name
    # no literal fallback when a value is bad: the fallback is the catalog's default
    assert all(p.default is inspect.Parameter.empty
               for p in inspect.signature(validation._get).parameters.values())


def test_a_bad_value_falls_back_to_the_catalog_default(monkeypatch) -> None:
    from froxlor_fleet.model import catalog

    monkeypatch.setitem(catalog.DEFAULTS, "ssh_port", 50000)
    found = errors({"g": (["h1"], {"froxlor_roles": ["ftp"], "ssh_port": "bad"})})
    # the overlap check ran with the catalog's (patched) default SSH port
    assert any("overlaps port 50000/tcp opened by 'ssh'" in line for line in found), found


# --- rule vocabulary: actions, ssh_rate_limit, web_http3 (issue 13) ---------------------

def specs(plan) -> set[tuple[str, str, str | None, str, str]]:
    return {(r.dport, r.proto, r.source, r.label, r.action) for r in plan.rules}


def test_extra_rule_actions() -> None:
    plan = plan_of({"froxlor_roles": ["web"], "firewall_extra_rules": [
        {"port": 80, "action": "deny", "sources": ["203.0.113.0/24"]},
        {"port": 3306, "action": "reject", "sources": ["198.51.100.7"], "comment": "abuse"},
        {"port": 2222, "action": "limit"},
        {"port": 8080, "action": "allow"},
        {"port": 8081}]})
    assert specs(plan) >= {("80", "tcp", "203.0.113.0/24", "extra", "deny"),
                           ("3306", "tcp", "198.51.100.7", "extra", "reject"),
                           ("2222", "tcp", None, "extra", "limit"),
                           ("8080", "tcp", None, "extra", "allow"),
                           ("8081", "tcp", None, "extra", "allow")}
    comments = {r.dport: r.comment for r in plan.rules}
    assert comments["3306"] == "froxlor-fleet:extra abuse"
    assert comments["2222"] == "froxlor-fleet:extra rate-limit"


def test_limit_is_taken_for_udp_too() -> None:
    """ufw takes ``limit`` for any protocol (src/parser.py, backend_iptables.py: the
    ``-m recent`` rules are protocol-neutral), so we do too."""
    plan = plan_of(extra(proto="udp", action="limit"))
    assert ("8080", "udp", None, "extra", "limit") in specs(plan)


def test_ssh_rate_limit_makes_every_ssh_rule_limit() -> None:
    plan = plan_of({"ssh_rate_limit": True,
                    "ssh_allowed_sources": ["192.0.2.0/24", "2001:db8::/32"]})
    assert {s for s in specs(plan) if s[3] == "ssh"} == {
        ("22", "tcp", "192.0.2.0/24", "ssh", "limit"),
        ("22", "tcp", "2001:db8::/32", "ssh", "limit")}
    assert {r.comment for r in plan.rules} == {"froxlor-fleet:ssh rate-limit"}
    assert plan.ssh_rate_limit is True
    default = plan_of({})
    assert specs(default) == {("22", "tcp", None, "ssh", "allow")} and not default.ssh_rate_limit


def test_web_http3_opens_443_udp_for_web_hosts_only() -> None:
    plan = plan_of({"froxlor_roles": ["web"], "web_http3": True})
    assert {s for s in specs(plan) if s[3] == "web"} == {("80,443", "tcp", None, "web", "allow"),
                                                          ("443", "udp", None, "web", "allow")}
    assert plan.web_http3 is True
    assert ("443", "udp", None, "web", "allow") not in specs(plan_of({"froxlor_roles": ["web"]}))
    # without the web role there is nothing to open (and nothing wrong)
    assert specs(plan_of({"froxlor_roles": ["dns"], "web_http3": True})) == {
        ("53", "tcp", None, "dns", "allow"), ("53", "udp", None, "dns", "allow"),
        ("22", "tcp", None, "ssh", "allow")}


@pytest.mark.parametrize("data,needle", [
    ({"froxlor_roles": ["web"], "firewall_extra_rules": [{"port": [80, 443], "action": "deny"}]},
     "deny on exactly the rule the 'web' role allows (80,443/tcp from anywhere)"),
    ({"froxlor_roles": ["mysql"], "mysql_allowed_sources": ["10.0.0.0/8"],
      "firewall_extra_rules": [{"port": 3306, "action": "reject", "sources": ["10.1.2.3/8"]}]},
     "reject on exactly the rule the 'mysql' role allows (3306/tcp from 10.0.0.0/8)"),
    ({"firewall_extra_rules": [{"port": 22, "action": "limit"}]},
     "set ssh_rate_limit = True to rate-limit SSH"),
    ({"ssh_rate_limit": True, "firewall_extra_rules": [{"port": 22}]},
     "allow on exactly the rule the 'ssh' role limits (22/tcp from anywhere)"),
    ({"froxlor_roles": ["web"], "web_http3": True,
      "firewall_extra_rules": [{"port": 443, "proto": "udp", "action": "deny"}]},
     "deny on exactly the rule the 'web' role allows (443/udp from anywhere)"),
])
def test_extra_rule_on_a_role_rules_exact_slot_with_another_action_is_refused(data, needle) -> None:
    """ufw keeps one rule per ports, protocol and source and updates it in place: the
    two would overwrite each other (or one would silently never be added)."""
    line = one_error(data)
    assert ": firewall_extra_rules = " in line and needle in line
    assert "ufw keeps one rule per ports, protocol and source" in line


def test_two_extra_rules_on_one_slot_with_other_actions_are_refused() -> None:
    found = errors({
        "a": (["h1"], {"firewall_extra_rules": [{"port": 8080, "sources": ["192.0.2.1"]}]}),
        "b": (["h1"], {"firewall_extra_rules": [{"port": "8080", "action": "deny",
                                                 "sources": ["192.0.2.1/32"]}]}),
    })
    assert len(found) == 1 and found[0].startswith("host h1 (group a): firewall_extra_rules = ")
    assert "allow on exactly the rule another firewall_extra_rules entry denies " \
           "(8080/tcp from 192.0.2.1)" in found[0]


def test_same_slot_same_action_is_kept_once_and_overlaps_are_fine() -> None:
    plan = plans({
        "a": (["h1"], {"froxlor_roles": ["web"], "firewall_extra_rules": [
            {"port": 80, "action": "deny", "sources": ["203.0.113.0/24"]}]}),
        "b": (["h1"], {"firewall_extra_rules": [
            {"port": 80, "action": "deny", "sources": ["203.0.113.0/24"]},
            {"port": 80, "action": "deny"}]}),  # not the web rule's slot (80,443): fine
    })["h1"]
    assert [s for s in specs(plan) if s[4] == "deny"].count(
        ("80", "tcp", "203.0.113.0/24", "extra", "deny")) == 1
    assert ("80", "tcp", None, "extra", "deny") in specs(plan)


def test_a_deny_may_cover_the_passive_range_an_allow_may_not() -> None:
    ftp = {"froxlor_roles": ["ftp"], "ftp_passive_ports": (50000, 50100)}
    plan = plan_of({**ftp, "firewall_extra_rules": [
        {"port": "50000:50100", "action": "deny", "sources": ["203.0.113.0/24"]}]})
    assert ("50000:50100", "tcp", "203.0.113.0/24", "extra", "deny") in specs(plan)
    line = one_error({**ftp, "firewall_extra_rules": [{"port": "50050", "action": "limit"}]})
    assert "overlaps port 50050/tcp opened by 'extra'" in line


def test_confirm_timeout_is_zero_or_a_sane_number_of_seconds() -> None:
    from froxlor_fleet.model.validation import resolve

    for good in (0, 5, 60, 240):
        plan, errors = resolve("h1", [("host data", {"firewall_confirm_timeout": good})])
        assert errors == [] and plan is not None and plan.confirm_timeout == good
    for bad in (-1, 3, 241, 600, True, "60", 60.0, None):
        plan, errors = resolve("h1", [("group web_servers", {"firewall_confirm_timeout": bad})])
        assert plan is None and len(errors) == 1, (bad, errors)
        assert errors[0].startswith(f"host h1 (group web_servers): firewall_confirm_timeout = {bad!r}:")
