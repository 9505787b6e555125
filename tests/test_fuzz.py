"""Property-based: any group data gives either clear one-line errors or a valid plan —
never a traceback — and nothing user-supplied reaches a remote shell unquoted."""

from __future__ import annotations

import json
import shlex

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyinfra.api.state import StateStage

from froxlor_fleet import firewall, proftpd
from froxlor_fleet.catalog import DEFAULTS
from froxlor_fleet.validation import resolve
from helpers import build_fact, fake_host

NASTY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | \
    st.sampled_from(["$(reboot)", "`id`", "'; rm -rf / #", "a\nb", "ümlaut 🔥", "\\", '"', "\x00",
                     "10.0.0.0/8; id", "--help", "-rf", "${IFS}", "∞"])
PORTISH = st.integers(min_value=-70000, max_value=140000) | st.sampled_from(
    ["22", "80:90", "90:80", "65536", "0", "1:65535", "abc", "", ":", "22:22"]) | NASTY_TEXT
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | NASTY_TEXT
ADDRESSES = st.sampled_from(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1", "10.1.2.3/8",
                             "0.0.0.0/0", "300.1.1.1", "10.0.0.0/33", "fe80::1%eth0"]) | NASTY_TEXT
ANYTHING = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)

EXTRA_RULE = st.fixed_dictionaries(
    {"port": PORTISH | st.lists(PORTISH, max_size=17)},
    optional={"proto": st.sampled_from(["tcp", "udp", "sctp", ""]) | NASTY_TEXT,
              "sources": st.lists(ADDRESSES, max_size=3) | ADDRESSES,
              "comment": NASTY_TEXT, "action": NASTY_TEXT})

VALUES = {
    "froxlor_roles": st.lists(st.sampled_from(["web", "ftp", "dns", "ssh", "imap", "pop3", "smtp",
                                               "mysql", "mail", "wbe", ""]) | NASTY_TEXT, max_size=5),
    "ftp_passive_ports": st.tuples(PORTISH, PORTISH) | ANYTHING,
    "ftp_masquerade_address": ADDRESSES | st.sampled_from(["ftp.example.net", "a..b", "x" * 300]),
    "ssh_port": PORTISH,
    "ssh_allowed_sources": st.lists(ADDRESSES, max_size=3) | ANYTHING,
    "mysql_allowed_sources": st.lists(ADDRESSES, max_size=3) | ANYTHING,
    "firewall_extra_rules": st.lists(EXTRA_RULE, max_size=3) | ANYTHING,
    "firewall_default_incoming": st.sampled_from(["allow", "deny", "reject", "drop"]) | ANYTHING,
    "firewall_default_outgoing": st.sampled_from(["allow", "deny", "reject"]) | ANYTHING,
    "firewall_logging": st.sampled_from(["off", "low", "full", "on"]) | ANYTHING,
    "firewall_enabled": st.booleans() | ANYTHING,
    "firewall_purge_unmanaged": st.booleans() | ANYTHING,
}
GROUP_DATA = st.fixed_dictionaries({}, optional=VALUES)


def unquoted(command) -> list[str]:
    """The shell words the remote shell would see."""
    return shlex.split(command.get_raw_value())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group=GROUP_DATA, host_data=GROUP_DATA)
def test_any_data_gives_clear_errors_or_a_valid_quoted_plan(group, host_data) -> None:
    plan, errors = resolve("h1", [("host data", host_data), ("group web_servers", group)])
    if errors:
        assert plan is None
        for line in errors:
            assert line.startswith("host h1") and "\n" not in line
            assert any(f": {key} = " in line for key in DEFAULTS), line
        return
    assert plan is not None and "ssh" in plan.roles
    fragment = (proftpd.render_fragment(plan.passive_ports, plan.masquerade_address)
                if plan.passive_ports else None)
    with fake_host(build_fact({"scenario": "hand-made-mixed"}), stage=StateStage.Execute):
        try:
            commands = list(firewall.rules_and_policies._inner(
                rules=plan.rules, incoming=plan.incoming, outgoing=plan.outgoing,
                logging=plan.logging, enabled=plan.enabled, purge_unmanaged=plan.purge_unmanaged))
        except firewall.OperationError as e:  # only the lockout guard may refuse a valid plan
            assert str(e).startswith("lockout guard:")
            commands = []
        frag_commands = list(proftpd.passive_ports_fragment._inner(content=fragment))
    for command in commands:
        words = unquoted(command)
        payload = json.loads(words[-1])  # the plan reaches the host as one intact word
        wanted = [spec.ufw_args() for spec in plan.rules]
        # ufw gets each rule as an argv list (parsed by ufw, never by a shell)
        assert all(argv in wanted for argv in payload["add"])
    for command in frag_commands:
        words = unquoted(command)
        assert words[-1] == (fragment or "") and words[-2].startswith("/etc/proftpd/conf.d/")
