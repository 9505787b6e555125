"""fail2ban's bans share UFW with us (issue 19): with ``banaction = ufw`` fail2ban adds
``ufw prepend reject from <ip> to any comment "by Fail2Ban after N attempts against
<jail>"`` (its config/action.d/ufw.conf). They are another tenant's rules: never deleted
by ``firewall_purge_unmanaged``, never listed as hand-made rules to review, counted per
jail. (Releases before 1.0 add ``deny from <ip>`` without a comment: indistinguishable
from an admin's own deny, so treated as one.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from froxlor_fleet.remote.ufwmodel import Want, ban_jail, expand, plan_rules
from froxlor_fleet.ufwrules import UfwRule
from test_ufw_apply import SSH, WEB, Host

BAN4 = UfwRule(4, "reject", "any", "any", "0.0.0.0/0", "any", "203.0.113.9",
               comment="by Fail2Ban after 5 attempts against sshd")
BAN6 = UfwRule(6, "reject", "any", "any", "::/0", "any", "2001:db8::9",
               comment="by Fail2Ban after 3 attempts against proftpd")
# fail2ban before 1.0, or an admin's own deny: no way to tell, so a hand-made rule
OLD_BAN = UfwRule(4, "deny", "any", "any", "0.0.0.0/0", "any", "198.51.100.7")
HAND_8080 = UfwRule(4, "allow", "tcp", "8080", "0.0.0.0/0", "any", "0.0.0.0/0")
HAND_DENY_NET = UfwRule(4, "deny", "any", "any", "0.0.0.0/0", "any", "198.51.100.0/24")


def converged() -> list[UfwRule]:
    return [r for w in (SSH, WEB) for r in expand(w, True)]


@pytest.mark.parametrize("rule,jail", [(BAN4, "sshd"), (BAN6, "proftpd"),
                                       (OLD_BAN, None), (HAND_8080, None),
                                       (HAND_DENY_NET, None)])
def test_a_ban_is_told_by_fail2bans_comment_or_shape(rule, jail) -> None:
    assert ban_jail(rule) == jail


def test_purge_keeps_bans_and_removes_other_hand_made_rules() -> None:
    current = [BAN4, OLD_BAN, *converged(), HAND_8080, BAN6]
    plan = plan_rules(current, [SSH, WEB], True, purge_unmanaged=True)
    assert plan.delete == [OLD_BAN, HAND_8080]
    assert plan.bans == [BAN4, BAN6]
    assert plan.kept == []


def test_without_purge_bans_are_not_listed_as_rules_to_review() -> None:
    plan = plan_rules([BAN4, *converged(), HAND_8080], [SSH, WEB], True, purge_unmanaged=False)
    assert plan.kept == [HAND_8080] and plan.bans == [BAN4] and not plan.changes


def test_a_ban_still_cuts_into_what_the_guard_sees() -> None:
    """A ban stays in ``final``: the lockout guard reads it (a ban of the operator's own
    address would refuse their session)."""
    plan = plan_rules([BAN4, *converged()], [SSH, WEB], True, purge_unmanaged=True)
    assert plan.final[0] == BAN4


def test_purge_through_ufw_keeps_the_ban(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path, monkeypatch)
    rules = tmp_path / "etc" / "ufw" / "user.rules"
    rules.write_text(f"### tuple ### {BAN4.tuple_text()}\n" + rules.read_text()
                     + f"### tuple ### {HAND_8080.tuple_text()}\n")
    code, out = host.run(purge=True)
    assert code == 0, out
    written = host.written()
    assert BAN4 in written and HAND_8080 not in written
    assert {r.dport for r in written if r.comment.startswith("froxlor-fleet:")} == {"22", "80,443"}


def test_want_of_ours_is_never_a_ban() -> None:
    deny = Want("any", "any", "203.0.113.9", "froxlor-fleet:extra", "deny")
    assert all(ban_jail(r) is None for r in expand(deny, True))


def test_the_diff_counts_bans_per_jail() -> None:
    from froxlor_fleet.firewall import ban_summary

    unnamed = UfwRule(4, "reject", "any", "any", "0.0.0.0/0", "any", "192.0.2.1",
                      comment="by Fail2Ban")
    assert ban_summary([BAN4, unnamed, BAN6]) == "3 bans (sshd 1, fail2ban 1, proftpd 1)"
    assert ban_summary([BAN4]) == "1 ban (sshd 1)"
