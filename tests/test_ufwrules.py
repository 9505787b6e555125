"""Rule expansion, planning and the lockout guard's admission check."""

from froxlor_fleet.hoststate import parse_state
from froxlor_fleet.ufwrules import UfwRule, admits, expand, plan_rules
from froxlor_fleet.validation import RuleSpec
from helpers import fact_lines

SSH = RuleSpec(("22",), "tcp", None, "ssh")
WEB = RuleSpec(("80", "443"), "tcp", None, "web")
FTP = RuleSpec(("21",), "tcp", None, "ftp")
PASSIVE = RuleSpec(("49152:65534",), "tcp", None, "ftp")


def test_expansion_matches_what_ufw_wrote() -> None:
    """Our predicted tuples equal the ones real ufw wrote for the same CLI arguments."""
    real = parse_state(fact_lines("converged-web-ftp")).ufw.rules
    predicted = [r for spec in (FTP, PASSIVE, SSH, WEB) for r in expand(spec, ipv6=True)]
    assert sorted(predicted, key=lambda r: (r.family, r.dport)) == \
        sorted(real, key=lambda r: (r.family, r.dport))


def test_expansion_of_sourced_rules_is_single_family() -> None:
    v4 = expand(RuleSpec(("3306",), "tcp", "10.0.0.0/8", "mysql"), ipv6=True)
    v6 = expand(RuleSpec(("3306",), "tcp", "2001:db8::/32", "mysql"), ipv6=True)
    assert [r.family for r in v4] == [4] and v4[0].src == "10.0.0.0/8"
    assert [r.family for r in v6] == [6]
    assert [r.family for r in expand(SSH, ipv6=False)] == [4]


def test_converged_plan_is_empty() -> None:
    rules = parse_state(fact_lines("converged-web-ftp")).ufw.rules
    plan = plan_rules(rules, (FTP, PASSIVE, SSH, WEB), True, purge_unmanaged=False)
    assert not plan.changes and plan.kept == []


def test_unmanaged_rules_kept_or_purged() -> None:
    rules = parse_state(fact_lines("hand-made-mixed")).ufw.rules
    kept = plan_rules(rules, (SSH,), True, purge_unmanaged=False)
    assert {r.describe() for r in kept.kept} >= {"allow 8080/tcp", "limit 2222/tcp"}
    # managed mysql rules are not wanted any more: removed even without purge
    assert {r.label for r in kept.delete} == {"mysql"}
    purged = plan_rules(rules, (SSH,), True, purge_unmanaged=True)
    assert purged.kept == [] and len(purged.delete) == len(rules) - 2  # 22/tcp v4+v6 adopted


def test_hand_made_twin_is_retagged_not_duplicated() -> None:
    rules = parse_state(fact_lines("hand-made-mixed")).ufw.rules
    plan = plan_rules(rules, (SSH,), True, purge_unmanaged=False)
    assert plan.add == [SSH]
    assert [r.comment for _, r in plan.retag] == ["", ""]
    assert not any(r.dport == "22" and r.dapp == "-" for r in plan.delete)


def rule(dport: str, src: str = "0.0.0.0/0", action: str = "allow", proto: str = "tcp",
         iface: str = "in") -> UfwRule:
    return UfwRule(4, action, proto, dport, "0.0.0.0/0", "any", src, iface)


def test_admits_first_match_wins() -> None:
    assert admits([rule("22")], "deny", "10.0.0.5", "10.0.0.1", 22)
    assert not admits([rule("80,443")], "deny", "10.0.0.5", "10.0.0.1", 22)
    assert admits([rule("80,443")], "allow", "10.0.0.5", "10.0.0.1", 22)
    assert not admits([rule("any", src="10.0.0.5", action="deny"), rule("22")],
                      "deny", "10.0.0.5", "10.0.0.1", 22)
    assert admits([rule("20:30")], "deny", "10.0.0.5", "10.0.0.1", 22)
    assert admits([rule("22", action="limit")], "deny", "10.0.0.5", "10.0.0.1", 22)
    assert not admits([rule("22", src="192.0.2.0/24")], "deny", "10.0.0.5", "10.0.0.1", 22)
    assert not admits([rule("22", proto="udp")], "deny", "10.0.0.5", "10.0.0.1", 22)
    # interface rules can't be judged from here: not counted as admitting
    assert not admits([rule("22", iface="in_eth0")], "deny", "10.0.0.5", "10.0.0.1", 22)
    # a v6 rule does not admit a v4 client
    v6 = UfwRule(6, "allow", "tcp", "22", "::/0", "any", "::/0")
    assert not admits([v6], "deny", "10.0.0.5", "10.0.0.1", 22)
    assert admits([v6], "deny", "2001:db8::5", "2001:db8::1", 22)
    assert admits([rule("22")], "deny", "::ffff:10.0.0.5", "::ffff:10.0.0.1", 22)
