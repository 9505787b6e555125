"""Sources from the inventory (issue 18): a source may name an inventory group
("@web_servers"), checked before pyinfra connects and resolved to the members'
addresses at deploy time and in the audit, by one resolver (``model/groups.py``); and
``dns_transfer_sources``: who may reach 53/tcp (zone transfers) on a dns host."""

from __future__ import annotations

from test_validation import one_error, plan_of, plans, ports

# --- dns_transfer_sources ---------------------------------------------------------------


def test_dns_transfer_sources_admit_53_tcp_from_them_only_and_53_udp_stays_open() -> None:
    plan = plan_of({"froxlor_roles": ["dns"],
                    "dns_transfer_sources": ["192.0.2.53/32", "2001:db8::53"]})
    assert {p for p in ports(plan) if p[3] == "dns"} == {
        ("53", "tcp", "192.0.2.53", "dns"), ("53", "tcp", "2001:db8::53", "dns"),
        ("53", "udp", None, "dns")}


def test_dns_transfer_sources_default_to_anywhere() -> None:
    plan = plan_of({"froxlor_roles": ["dns"]})
    assert {p for p in ports(plan) if p[3] == "dns"} == {
        ("53", "tcp", None, "dns"), ("53", "udp", None, "dns")}


def test_dns_transfer_sources_are_checked_like_other_sources() -> None:
    line = one_error({"froxlor_roles": ["dns"], "dns_transfer_sources": ["10.0.0.300"]})
    assert line.startswith("host web1 (group web_servers): dns_transfer_sources = ")
    assert "not a valid IP address" in line
    assert "must be a list" in one_error({"froxlor_roles": ["dns"],
                                          "dns_transfer_sources": "10.0.0.1"})


def test_dns_transfer_sources_are_ours_and_a_near_miss_is_named() -> None:
    line = one_error({"froxlor_roles": ["dns"], "dns_transfer_source": ["10.0.0.1"]})
    assert "dns_transfer_source: unknown key, did you mean 'dns_transfer_sources'?" in line
    assert "10.0.0.1" not in line


def test_dns_transfer_sources_without_the_dns_role_are_ignored() -> None:
    # like mysql_allowed_sources: all.py may set it for every host
    assert plans({"web_servers": (["web1"], {"froxlor_roles": ["web"]})},
                 all_data={"dns_transfer_sources": ["10.0.0.1"]})["web1"]
