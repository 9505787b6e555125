"""Rule expansion, planning and the lockout guard's admission check."""

from froxlor_fleet.hoststate import parse_state
from froxlor_fleet.remote.ufwmodel import Session
from froxlor_fleet.remote.ufwmodel import admits as session_admits
from froxlor_fleet.ufwrules import UfwRule, admits, expand, plan_rules, want
from froxlor_fleet.validation import RuleSpec
from helpers import fact_lines

SSH = RuleSpec(("22",), "tcp", None, "ssh")
WEB = RuleSpec(("80", "443"), "tcp", None, "web")
FTP = RuleSpec(("21",), "tcp", None, "ftp")
PASSIVE = RuleSpec(("49152:65534",), "tcp", None, "ftp")


def test_expansion_matches_what_ufw_wrote() -> None:
    """Our predicted tuples equal the ones real ufw wrote for the same CLI arguments."""
    real = parse_state(fact_lines("converged-web-ftp")).ufw.rules
    predicted = [r for spec in (FTP, PASSIVE, SSH, WEB) for r in expand(want(spec), ipv6=True)]
    assert sorted(predicted, key=lambda r: (r.family, r.dport)) == \
        sorted(real, key=lambda r: (r.family, r.dport))


def test_expansion_of_sourced_rules_is_single_family() -> None:
    v4 = expand(want(RuleSpec(("3306",), "tcp", "10.0.0.0/8", "mysql")), ipv6=True)
    v6 = expand(want(RuleSpec(("3306",), "tcp", "2001:db8::/32", "mysql")), ipv6=True)
    assert [r.family for r in v4] == [4] and v4[0].src == "10.0.0.0/8"
    assert [r.family for r in v6] == [6]
    assert [r.family for r in expand(want(SSH), ipv6=False)] == [4]


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
    assert plan.add == [want(SSH)]
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
    # an interface rule whose interface we don't know is not counted as admitting
    assert not admits([rule("22", iface="in_eth0")], "deny", "10.0.0.5", "10.0.0.1", 22)
    # a v6 rule does not admit a v4 client
    v6 = UfwRule(6, "allow", "tcp", "22", "::/0", "any", "::/0")
    assert not admits([v6], "deny", "10.0.0.5", "10.0.0.1", 22)
    assert admits([v6], "deny", "2001:db8::5", "2001:db8::1", 22)
    assert admits([rule("22")], "deny", "::ffff:10.0.0.5", "::ffff:10.0.0.1", 22)


S4 = Session("10.0.0.5", "10.0.0.1", 22, "eth0")
S6 = Session("2001:db8::5", "2001:db8::1", 22, "eth0")


def test_guard_knows_the_sessions_interface() -> None:
    assert session_admits([rule("22", iface="in_eth0")], "deny", S4, True)
    assert not session_admits([rule("22", iface="in_eth1")], "deny", S4, True)
    # a deny on our interface before the allow drops us; on another interface it doesn't
    assert not session_admits([rule("22", action="deny", iface="in_eth0"), rule("22")], "deny", S4, True)
    assert session_admits([rule("22", action="deny", iface="in_eth1"), rule("22")], "deny", S4, True)
    # interface unknown (e.g. address on a bridge we couldn't map): a deny might match
    unknown = Session("10.0.0.5", "10.0.0.1", 22, None)
    assert not session_admits([rule("22", action="reject", iface="in_eth1"), rule("22")], "deny", unknown, True)
    # "out" and routed rules never see the incoming session
    assert session_admits([rule("22", action="deny", iface="out"), rule("22")], "deny", S4, True)


def test_guard_source_port_rules_fail_closed() -> None:
    """Each new connection picks another source port: a deny naming one might match,
    an allow naming one can't be relied on."""
    sport_deny = UfwRule(4, "deny", "tcp", "22", "0.0.0.0/0", "1024:65535", "0.0.0.0/0")
    assert not session_admits([sport_deny, rule("22")], "deny", S4, True)
    sport_allow = UfwRule(4, "allow", "tcp", "22", "0.0.0.0/0", "40000", "0.0.0.0/0")
    assert not session_admits([sport_allow], "deny", S4, True)
    assert session_admits([sport_allow, rule("22")], "deny", S4, True)


def test_guard_v6_sessions_and_ipv6_no() -> None:
    v6 = UfwRule(6, "allow", "tcp", "22", "::/0", "any", "::/0")
    assert session_admits([v6], "deny", S6, True)
    # IPV6=no: ufw-init drops all v6 input, whatever the rules or the policy
    assert not session_admits([v6], "allow", S6, False)
    assert session_admits([rule("22")], "deny", S4, False)
    # a v4 client on a dual-stack socket is a v4 session
    mapped = Session("::ffff:10.0.0.5", "::ffff:10.0.0.1", 22, "eth0")
    assert session_admits([rule("22")], "deny", mapped, False)
    assert session_admits([rule("22", action="limit_log")], "deny", S4, True)


def test_ipv6_no_leaves_v6_rules_alone() -> None:
    """With IPV6=no ufw won't touch user6.rules: deleting our old v6 rules there would
    fail on every run. They are inert, neither deleted nor counted."""
    rules = parse_state(fact_lines("converged-web-ftp")).ufw.rules
    plan = plan_rules(rules, (FTP, PASSIVE, SSH, WEB), False, purge_unmanaged=True)
    assert not plan.changes
    assert {r.family for r in plan.inert} == {6} and all(r.family == 4 for r in plan.final)


def test_hand_made_limit_or_log_on_ssh_keeps_its_action() -> None:
    """A hand-made `ufw limit 22/tcp` is not loosened to `allow`: it is adopted with its
    action (only the comment changes), and the next plan is empty."""
    limit = [UfwRule(4, "limit", "tcp", "22", "0.0.0.0/0", "any", "0.0.0.0/0"),
             UfwRule(6, "allow_log", "tcp", "22", "::/0", "any", "::/0")]
    plan = plan_rules(limit, (SSH,), True, purge_unmanaged=False)
    assert [w.action for w in plan.add] in (["limit"], ["allow_log"], ["limit", "allow_log"])
    assert sorted(w.ufw_args()[:2] for w in plan.add)[0][0] in ("allow", "limit")
    adopted = [UfwRule(4, "limit", "tcp", "22", "0.0.0.0/0", "any", "0.0.0.0/0", comment=SSH.comment),
               UfwRule(6, "allow_log", "tcp", "22", "::/0", "any", "::/0", comment=SSH.comment)]
    assert not plan_rules(adopted, (SSH,), True, purge_unmanaged=False).changes


def test_guard_counts_unreadable_hand_made_sources_as_might_match() -> None:
    """ufw keeps e.g. a non-contiguous netmask verbatim; Python can't read it. A deny
    with such a source might match us: fail closed."""
    odd = UfwRule(4, "deny", "tcp", "22", "0.0.0.0/0", "any", "10.0.0.0/255.0.255.0")
    assert not session_admits([odd, rule("22")], "deny", S4, True)
    odd_allow = UfwRule(4, "allow", "tcp", "22", "0.0.0.0/0", "any", "10.0.0.0/255.0.255.0")
    assert not session_admits([odd_allow], "deny", S4, True)
