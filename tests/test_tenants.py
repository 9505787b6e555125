"""fail2ban's bans share UFW with us (issue 19): with ``banaction = ufw`` fail2ban adds
``ufw prepend reject from <ip> to any comment "by Fail2Ban after N attempts against
<jail>"`` (its config/action.d/ufw.conf). They are another tenant's rules: never deleted
by ``firewall_purge_unmanaged``, never listed as hand-made rules to review, counted per
jail. (Releases before 1.0 add ``deny from <ip>`` without a comment: indistinguishable
from an admin's own deny, so treated as one.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from froxlor_fleet.facts import HostState, UfwState, parse_state
from froxlor_fleet.model.ufwrules import UfwRule
from froxlor_fleet.remote import program
from froxlor_fleet.remote.ufwmodel import Want, ban_jail, expand, plan_rules
from test_transaction import SSH, WEB, Host

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
    code, out = host.run(host.request(purge=True))
    assert code == 0, out
    written = host.written()
    assert BAN4 in written and HAND_8080 not in written
    assert {r.dport for r in written if r.comment.startswith("froxlor-fleet:")} == {"22", "80,443"}


def test_want_of_ours_is_never_a_ban() -> None:
    deny = Want("any", "any", "203.0.113.9", "froxlor-fleet:extra", "deny")
    assert all(ban_jail(r) is None for r in expand(deny, True))


def test_the_diff_counts_bans_per_jail() -> None:
    from froxlor_fleet.operations.ufw import ban_summary

    unnamed = UfwRule(4, "reject", "any", "any", "0.0.0.0/0", "any", "192.0.2.1",
                      comment="by Fail2Ban")
    assert ban_summary([BAN4, unnamed, BAN6]) == "3 bans (sshd 1, fail2ban 1, proftpd 1)"
    assert ban_summary([BAN4]) == "1 ban (sshd 1)"


# --- other tenants the state read names: iptables-persistent, nftables at boot ----------

def read_tenants(tmp_path: Path, installed: str, nft_enabled: bool, nft_conf: str | None):
    """state.sh run for real on a folder standing in for / (dpkg's file lists, systemd's
    enablement links, /etc/nftables.conf), with iptables and ip stubbed out."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("iptables", "ip"):
        (tools / name).write_text("#!/bin/sh\nexit 1\n")
        (tools / name).chmod(0o755)
    root = tmp_path / "root"
    info = root / "var" / "lib" / "dpkg" / "info"
    info.mkdir(parents=True)
    for pkg in installed.split():
        (info / f"{pkg}.list").write_text("/.\n")
    (info / "ufw.list").write_text("/.\n")
    wants = root / "etc" / "systemd" / "system" / "sysinit.target.wants"
    wants.mkdir(parents=True)
    if nft_enabled:  # as `systemctl enable nftables` links it on Debian
        (wants / "nftables.service").symlink_to("/lib/systemd/system/nftables.service")
    if nft_conf is not None:
        (root / "etc" / "nftables.conf").write_text(nft_conf)
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}",
           "FROXLOR_FLEET_ROOT": str(root)}
    out = subprocess.run(["sh", "-c", program("state.sh"), "froxlor-fleet", "", "", ""],
                         capture_output=True, text=True, env=env, check=True).stdout
    return parse_state(out.splitlines())


DEBIAN_NFTABLES_CONF = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n"


@pytest.mark.parametrize("installed,nft_enabled,nft_conf,persistent,flushes", [
    ("iptables-persistent netfilter-persistent", False, None,
     ("iptables-persistent", "netfilter-persistent"), False),
    ("netfilter-persistent", True, DEBIAN_NFTABLES_CONF, ("netfilter-persistent",), True),
    ("", True, "#flush ruleset\ntable inet f2b-table {\n}\n", (), False),
    ("", False, DEBIAN_NFTABLES_CONF, (), False),  # installed, not enabled: nothing at boot
    ("", True, None, (), False),
])
def test_the_state_read_names_other_tenants(tmp_path: Path, installed, nft_enabled, nft_conf,
                                             persistent, flushes) -> None:
    state = read_tenants(tmp_path, installed, nft_enabled, nft_conf)
    assert state.persistent == persistent and state.nftables_flushes is flushes


def test_the_refusal_names_each_package_in_good_english() -> None:
    from froxlor_fleet.operations.tenants import persistent_refusal

    one = persistent_refusal(("iptables-persistent",))
    assert "and iptables-persistent is: installing ufw would remove it (" in one
    assert "the rules it loads at boot" in one
    two = persistent_refusal(("iptables-persistent", "netfilter-persistent"))
    assert "netfilter-persistent are:" in two and "the rules they load at boot" in two


# --- fail2ban's chains under MANAGE_BUILTINS=yes, Docker beside UFW --------------------

def read_more_tenants(tmp_path: Path, manage_builtins: str, chains: str, docker: str):
    """state.sh for real on a folder standing in for /: /etc/default/ufw's
    MANAGE_BUILTINS, the chains `iptables -S` lists (a stub), Docker's daemon."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "ip").write_text("#!/bin/sh\nexit 1\n")
    (tools / "iptables").write_text(  # `-L ufw-user-input`: not loaded; `-S`: the chains
        "#!/bin/sh\ncase \"$*\" in *-S*) printf '%s\\n' " + " ".join(
            f"'-N {c}'" for c in chains.split()) + " ;; *) exit 1 ;; esac\n")
    (tools / "ip6tables").write_text("#!/bin/sh\nexit 0\n")
    for name in ("ip", "iptables", "ip6tables"):
        (tools / name).chmod(0o755)
    root = tmp_path / "root"
    (root / "etc" / "default").mkdir(parents=True)
    (root / "etc" / "default" / "ufw").write_text(f"IPV6=yes\nMANAGE_BUILTINS={manage_builtins}\n")
    if docker:  # where the package puts dockerd: docker-ce /usr/bin, Debian's docker.io /usr/sbin
        (root / docker).parent.mkdir(parents=True)
        (root / docker).write_text("")
        (root / docker).chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}",
           "FROXLOR_FLEET_ROOT": str(root)}
    out = subprocess.run(["sh", "-c", program("state.sh"), "froxlor-fleet", "", "", ""],
                         capture_output=True, text=True, env=env, check=True).stdout
    return parse_state(out.splitlines())


@pytest.mark.parametrize("manage_builtins,chains,docker,f2b_flushed", [
    ("yes", "INPUT f2b-sshd ufw-user-input", "", True),
    ("no", "INPUT f2b-sshd", "", False),   # Debian's default: ufw leaves them alone
    ("yes", "INPUT ufw-user-input", "usr/bin/dockerd", False),  # no fail2ban chains to flush
    ("no", "INPUT", "usr/sbin/dockerd", False),
])
def test_the_state_read_names_f2b_chains_ufw_flushes_and_docker(
        tmp_path: Path, manage_builtins, chains, docker, f2b_flushed) -> None:
    """Issue 19: with MANAGE_BUILTINS=yes every ufw reload/enable/disable flushes the
    built-in chains, and fail2ban's f2b-* jumps and bans with them; Docker publishes
    ports through its own chains, past UFW."""
    state = read_more_tenants(tmp_path, manage_builtins, chains, docker)
    assert state.f2b_flushed is f2b_flushed
    assert state.docker is bool(docker)


def tenant_state(**tenants) -> HostState:
    return HostState(ufw=UfwState(installed=True), **tenants)


def test_each_conflict_is_named_once_with_its_audit_severity() -> None:
    from froxlor_fleet.operations.tenants import conflicts

    assert conflicts(tenant_state()) == []
    every = tenant_state(nftables_flushes=True, f2b_flushed=True, docker=True,
                         persistent=("iptables-persistent",))
    every.ufw.installed = False
    found = conflicts(every)
    assert [(c.name, c.severity) for c in found] == [
        ("nftables_at_boot", "drift"), ("f2b_flushed", "drift"), ("persistent", "drift"),
        ("docker", "notice")]
    texts = {c.name: c.text for c in found}
    assert "MANAGE_BUILTINS=yes" in texts["f2b_flushed"] and "f2b-" in texts["f2b_flushed"]
    assert "bypass UFW" in texts["docker"]
    assert "iptables-persistent" in texts["persistent"]


def test_persistent_beside_an_installed_ufw_is_not_a_conflict_to_refuse() -> None:
    """dpkg keeps ufw and iptables-persistent apart; the audit's persistent finding is
    for a host where ufw is missing (the deploy refuses to install it there)."""
    from froxlor_fleet.operations.tenants import conflicts

    state = tenant_state(persistent=("netfilter-persistent",))
    assert [c.name for c in conflicts(state)] == []
    state.ufw.installed = False
    assert [c.name for c in conflicts(state)] == ["persistent"]
