"""Rule expansion, planning and the lockout guard's admission check."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from froxlor_fleet.facts import parse_state
from froxlor_fleet.model.plan import RuleSpec
from froxlor_fleet.model.ufwrules import UfwRule, admits, expand, plan_rules, want
from froxlor_fleet.remote.ufwmodel import ANY, Session, Want, parse_rules
from froxlor_fleet.remote.ufwmodel import admits as session_admits
from helpers import UFW_FIXTURES, fact_lines, ufw_sandbox

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
    assert not session_admits([rule("22", action="reject", iface="in_eth1"), rule("22")], "deny",
                              unknown, True)
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


# --- actions: deny/reject before the allows, limit, adoption (issue 13) -----------------

def tcp(*ports: str, label: str = "extra", source: str | None = None, action: str = "allow",
        proto: str = "tcp", note: str = "") -> RuleSpec:
    return RuleSpec(tuple(ports), proto, source, label, note, action)


CONVERGED = [FTP, PASSIVE, SSH, WEB]  # what converged-web-ftp holds
CONVERGED_RULES = parse_state(fact_lines("converged-web-ftp")).ufw.rules


def tuples(rules: list[UfwRule]) -> list[tuple[int, str]]:
    return [(r.family, r.tuple_text()) for r in rules]


def test_new_deny_is_prepended_and_comes_first() -> None:
    deny = tcp("80", source="203.0.113.0/24", action="deny")
    plan = plan_rules(CONVERGED_RULES, [*CONVERGED, deny], True, purge_unmanaged=False)
    assert [w.ufw_args() for w in plan.add] == [[
        "prepend", "deny", "proto", "tcp", "from", "203.0.113.0/24", "to", "any", "port", "80",
        "comment", "froxlor-fleet:extra"]]
    assert plan.final[0].describe() == "deny 80/tcp from 203.0.113.0/24"
    assert tuples(plan.final[1:]) == tuples(CONVERGED_RULES)  # the rest as it was
    assert plan.shadowed == []
    # ... and the guard sees it first: that network no longer reaches the web server
    assert not session_admits(plan.final, "deny", Session("203.0.113.9", "10.0.0.1", 80), True)
    assert session_admits(plan.final, "deny", Session("198.51.100.9", "10.0.0.1", 80), True)


def test_prepended_rules_keep_the_datas_order() -> None:
    """Each prepend goes to the top, so they are added last to first."""
    a = tcp("8080", source="192.0.2.1", action="deny")
    b = tcp("8080", source="192.0.2.0/24", action="reject")
    c = tcp("8081", action="deny")  # from anywhere: both families
    plan = plan_rules(CONVERGED_RULES, [*CONVERGED, a, b, c], True, purge_unmanaged=False)
    assert [w.dport + " " + (w.source or "any") for w in plan.add] == [
        "8081 any", "8080 192.0.2.0/24", "8080 192.0.2.1"]
    v4 = [r.describe() for r in plan.final if r.family == 4]
    assert v4[:3] == ["deny 8080/tcp from 192.0.2.1", "reject 8080/tcp from 192.0.2.0/24",
                      "deny 8081/tcp"]
    assert next(r.describe() for r in plan.final if r.family == 6) == "deny 8081/tcp"


def test_allow_and_limit_are_appended() -> None:
    plan = plan_rules([], [SSH, tcp("2222", action="limit")], True, purge_unmanaged=False)
    assert [w.ufw_args()[0] for w in plan.add] == ["allow", "limit"]
    assert [r.action for r in plan.final] == ["allow", "limit", "allow", "limit"]
    assert plan.add[1].comment == "froxlor-fleet:extra rate-limit"


def test_ssh_rate_limit_turns_the_ssh_rule_into_limit_and_back() -> None:
    limited = RuleSpec(("22",), "tcp", None, "ssh", action="limit")
    plan = plan_rules(CONVERGED_RULES, [FTP, PASSIVE, limited, WEB], True, purge_unmanaged=False)
    assert [w.ufw_args()[:1] for w in plan.add] == [["limit"]]  # updated in place, not prepended
    assert {(r.action, r.comment) for r in plan.final if r.dport == "22"} == {
        ("limit", "froxlor-fleet:ssh rate-limit")}
    assert [r.dport for r in plan.final if r.family == 4] == ["21", "49152:65534", "22", "80,443"]
    assert [(have.action, have.label) for _, have in plan.retag] == [("allow", "ssh")] * 2
    # the guard: limit admits
    assert session_admits(plan.final, "deny", S4, True)
    # data back to allow: our rate-limit rule goes back to allow (its comment says we made it)
    after = [replace(r, action="limit", comment=limited.comment) if r.dport == "22" else r
             for r in CONVERGED_RULES]
    back = plan_rules(after, CONVERGED, True, purge_unmanaged=False)
    assert [w.action for w in back.add] == ["allow"]
    assert {r.action for r in back.final if r.dport == "22"} == {"allow"}


def test_adopted_hand_made_limit_stays_but_rate_limit_can_take_it_over() -> None:
    hand = [replace(r, action="limit", comment="") if r.dport == "22" else r
            for r in CONVERGED_RULES]
    adopt = plan_rules(hand, CONVERGED, True, purge_unmanaged=False)
    assert [(w.action, w.comment) for w in adopt.add] == [("limit", "froxlor-fleet:ssh")]
    adopted = [replace(r, comment="froxlor-fleet:ssh") if r.dport == "22" else r for r in hand]
    assert not plan_rules(adopted, CONVERGED, True, purge_unmanaged=False).changes
    limited = RuleSpec(("22",), "tcp", None, "ssh", action="limit")
    take = plan_rules(adopted, [FTP, PASSIVE, limited, WEB], True, purge_unmanaged=False)
    assert [(w.action, w.comment) for w in take.add] == [("limit", "froxlor-fleet:ssh rate-limit")]


def test_logging_variant_of_the_wanted_verdict_is_kept() -> None:
    deny = tcp("3306", source="203.0.113.0/24", action="deny")
    hand = [UfwRule(4, "deny_log", "tcp", "3306", "0.0.0.0/0", "any", "203.0.113.0/24")]
    plan = plan_rules(hand, [deny], True, purge_unmanaged=False)
    assert [(w.action, w.prepend) for w in plan.add] == [("deny_log", False)]
    limit = tcp("2222", action="limit")
    hand = [UfwRule(f, "limit_log", "tcp", "2222", ANY[f], "any", ANY[f]) for f in (4, 6)]
    assert [w.action for w in plan_rules(hand, [limit], True, False).add] == ["limit_log"]


def test_extra_allow_does_not_keep_a_limit_this_deploy_made() -> None:
    made = [UfwRule(f, "limit", "tcp", "2222", ANY[f], "any", ANY[f],
                    comment="froxlor-fleet:extra rate-limit") for f in (4, 6)]
    plan = plan_rules(made, [tcp("2222")], True, purge_unmanaged=False)
    assert [w.action for w in plan.add] == ["allow"]


def test_deny_over_an_existing_allow_is_updated_in_place_and_said_to_be_shadowed() -> None:
    """``ufw prepend`` would skip a rule whose slot exists: the allow that held the slot
    is updated in place, and stays after the allow from anywhere it was behind."""
    wide = [UfwRule(4, "allow", "tcp", "8080", "0.0.0.0/0", "any", "0.0.0.0/0",
                    comment="froxlor-fleet:extra"),
            UfwRule(4, "allow", "tcp", "8080", "0.0.0.0/0", "any", "192.0.2.0/24",
                    comment="froxlor-fleet:extra")]
    deny = tcp("8080", source="192.0.2.0/24", action="deny")
    plan = plan_rules(wide, [tcp("8080"), deny], False, purge_unmanaged=False)
    assert [(w.action, w.prepend) for w in plan.add] == [("deny", False)]
    assert [r.action for r in plan.final] == ["allow", "deny"]
    assert [(r.describe(), by.describe()) for r, by in plan.shadowed] == [
        ("deny 8080/tcp from 192.0.2.0/24", "allow 8080/tcp")]
    # a deny for another port or another network is not shadowed
    other = [replace(wide[0], dport="8081"), wide[1]]
    assert plan_rules(other, [tcp("8081"), deny], False, False).shadowed == []


def test_prepend_only_when_no_half_needs_an_update() -> None:
    """A deny from anywhere has a v4 and a v6 half. If the v4 half exists exactly, the
    prepend adds the v6 half at the top (ufw skips the v4 one). If the v4 half needs an
    update, no prepend (it would be skipped): v4 in place, v6 appended."""
    deny = tcp("8081", action="deny")
    exact = [UfwRule(4, "deny", "tcp", "8081", "0.0.0.0/0", "any", "0.0.0.0/0",
                     comment="froxlor-fleet:extra")]
    plan = plan_rules(CONVERGED_RULES + exact, [*CONVERGED, deny], True, False)
    assert [w.prepend for w in plan.add] == [True]
    assert next(r for r in plan.final if r.family == 6).describe() == "deny 8081/tcp"
    assert [r for r in plan.final if r.family == 4][-1].describe() == "deny 8081/tcp"
    stale = [replace(exact[0], comment="hand made")]
    plan = plan_rules(CONVERGED_RULES + stale, [*CONVERGED, deny], True, False)
    assert [w.prepend for w in plan.add] == [False]
    assert [r for r in plan.final if r.family == 6][-1].describe() == "deny 8081/tcp"


def test_wire_form_leaves_prepend_to_the_plan() -> None:
    w = want(tcp("80", source="192.0.2.1", action="reject"))
    assert w.to_wire() == {"dport": "80", "proto": "tcp", "source": "192.0.2.1",
                           "comment": "froxlor-fleet:extra", "action": "reject"}
    assert Want(**w.to_wire()) == w


# --- the same plans applied by ufw's own code, on files in a temporary folder ----------

@pytest.fixture
def real_ufw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Apply a plan through ``ufw_apply.apply`` (ufw's frontend, the CLI's code path) to
    rule files in ``tmp_path`` (``helpers.ufw_sandbox``), with ufw.conf saying disabled.
    Returns ``apply(current, wanted, ipv6) -> (plan, rules ufw wrote, in file order)``."""
    etc = ufw_sandbox(tmp_path, monkeypatch)
    import ufw.frontend

    from froxlor_fleet.remote import ufw_apply

    scenario = UFW_FIXTURES / "converged-web-ftp"

    def apply(current: list[UfwRule], wanted: list, ipv6: bool = True):
        default = (scenario / "default-ufw").read_text()
        ipv6_setting = f"IPV6={'yes' if ipv6 else 'no'}"
        (etc / "default" / "ufw").write_text(default.replace("IPV6=yes", ipv6_setting))
        (etc / "ufw" / "ufw.conf").write_text("ENABLED=no\nLOGLEVEL=low\n")
        for name, family in (("user.rules", 4), ("user6.rules", 6)):
            (etc / "ufw" / name).write_text("".join(
                f"### tuple ### {r.tuple_text()}\n" for r in current if r.family == family))
        ui = ufw.frontend.UFWFrontend(False, rootdir=str(tmp_path), datadir=str(tmp_path))
        ui.backend.caps = {"limit": {"4": True, "6": True}}  # as on a real host
        plan = plan_rules(current, wanted, ipv6, purge_unmanaged=False)
        adds, deletes = ufw_apply.build(plan)
        settings = {"incoming": "deny", "outgoing": "allow", "logging": "low"}
        ufw_apply.apply(ui, {**settings, "enabled": False},
                        {**settings, "conf_enabled": False, "running": False}, adds, deletes)
        written = parse_rules(*((etc / "ufw" / name).read_text().splitlines()
                                for name in ("user.rules", "user6.rules")))
        return plan, [r for r in written if ipv6 or r.family == 4]

    return apply


HAND_22 = [replace(r, action="limit", comment="") if r.dport == "22" else r
           for r in CONVERGED_RULES]
WIDE_8080 = [UfwRule(4, "allow", "tcp", "8080", "0.0.0.0/0", "any", "0.0.0.0/0",
                     comment="froxlor-fleet:extra"),
             UfwRule(4, "allow", "tcp", "8080", "0.0.0.0/0", "any", "192.0.2.0/24",
                     comment="froxlor-fleet:extra")]
SCENARIOS = {
    "denies-and-rejects-prepended": (CONVERGED_RULES, [
        *CONVERGED, tcp("80", source="203.0.113.0/24", action="deny"),
        tcp("443", source="2001:db8::/32", action="reject", proto="udp"),
        tcp("3306", action="deny"), tcp("53", action="reject", proto="udp")]),
    "rate-limit-ssh": (CONVERGED_RULES, [FTP, PASSIVE, tcp("22", label="ssh", action="limit"),
                                         WEB]),
    "limit-back-to-allow": ([replace(r, action="limit", comment="froxlor-fleet:ssh rate-limit")
                             if r.dport == "22" else r for r in CONVERGED_RULES], CONVERGED),
    "hand-made-limit-adopted": (HAND_22, CONVERGED),
    "deny-in-place-of-allow": (WIDE_8080, [tcp("8080"),
                                           tcp("8080", source="192.0.2.0/24", action="deny")]),
    "deny-half-exists": (CONVERGED_RULES + [UfwRule(4, "deny", "tcp", "8081", "0.0.0.0/0", "any",
                                                    "0.0.0.0/0", comment="froxlor-fleet:extra")],
                         [*CONVERGED, tcp("8081", action="deny")]),
    "deny-half-needs-update": (CONVERGED_RULES + [UfwRule(4, "allow", "tcp", "8081", "0.0.0.0/0",
                                                          "any", "0.0.0.0/0")],
                               [*CONVERGED, tcp("8081", action="deny")]),
    "removed-and-added": (CONVERGED_RULES, [SSH, tcp("25", action="deny"), WEB,
                                            tcp("993", source="192.0.2.7", action="limit")]),
    "http3": (CONVERGED_RULES, [*CONVERGED, tcp("443", label="web", proto="udp")]),
}


@pytest.mark.parametrize("ipv6", [True, False], ids=["ipv6", "ipv6-no"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_plan_final_is_what_ufw_writes(real_ufw, scenario: str, ipv6: bool) -> None:
    """``final`` (what the lockout guard reads) is, rule for rule and in order, what
    ufw's own code writes for the plan's adds and deletes; and the next plan is empty."""
    current, wanted = SCENARIOS[scenario]
    wanted = [w for w in wanted if ipv6 or not (w.source and ":" in w.source)]
    if not ipv6:
        current = [r for r in current if r.family == 4]
    plan, written = real_ufw(current, wanted, ipv6)
    assert plan.changes or (scenario, ipv6) == ("deny-half-exists", False)  # v4 was complete
    assert tuples(written) == tuples(plan.final)
    assert not plan_rules(written, wanted, ipv6, purge_unmanaged=False).changes
