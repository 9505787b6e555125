"""Property-based tests, split as issues 9 and 14 ask:

(a) arbitrary data, at every layer (--data, host data, groups, all) -> always a plan or
    a clean ``FleetDataError`` with one line per problem, never another exception; and
    what a valid plan sends to the host is quoted words only.
(b) *valid* plans with hostile-but-valid values (comments of every character class ufw
    takes, v4/v6 sources in every spelling ufw takes, masquerade addresses) -> every
    rule round-trips through ufw's real parser unchanged (comment, source, ports, proto
    as stored), and the ProFTPd fragment passes ``proftpd -t`` holding the values as
    written. The strategies build valid data by construction, and the test asserts that
    every example is a plan with user comments.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pyinfra.api.command import StringCommand
from pyinfra.api.state import StateStage

from froxlor_fleet.model.catalog import DEFAULTS, VALID_ROLES
from froxlor_fleet.model.groups import Member, resolve_groups
from froxlor_fleet.model.ufwrules import ANY, Want, parse_tuple_line, want
from froxlor_fleet.model.validation import FleetDataError, check_inventory, near_miss, resolve
from froxlor_fleet.operations import ftp, ftpplan, hostprogram
from froxlor_fleet.operations.ufw import rules_and_policies
from helpers import build_fact, fake_host, make_inventory
from test_conformance import PROFTPD, directives, need, ours, proftpd_check, ufw, ufw_tuples

# --- (a) arbitrary data -------------------------------------------------------------------

NASTY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | \
    st.sampled_from(["$(reboot)", "`id`", "'; rm -rf / #", "a\nb", "ümlaut 🔥", "\\", '"', "\x00",
                     "10.0.0.0/8; id", "--help", "-rf", "${IFS}", "∞", "\u202e", "\u2028",
                     "fe80::1%eth0\nAllowOverwrite on", "ftp.example.net\n", "010.0.0.1"])
PORTISH = st.integers(min_value=-70000, max_value=140000) | st.sampled_from(
    ["22", "80:90", "90:80", "65536", "0", "1:65535", "abc", "", ":", "22:22", "²", "٢٢"]
) | NASTY_TEXT
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | NASTY_TEXT
ADDRESSES = st.sampled_from(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1", "10.1.2.3/8",
                             "0.0.0.0/0", "300.1.1.1", "10.0.0.0/33", "fe80::1%eth0",
                             "::ffff:192.0.2.7", "2001:db8::1/32", "10.0.0.0/08", "any",
                             "10.0.0.0/8\n", "fe80::1%x\nPassivePorts 1 2",
                             # inventory groups (issue 18): known, unknown, not a name
                             "@web_servers", "@db_servers", "@nope", "@web-servers", "@",
                             "@$(id)"]) | NASTY_TEXT
# Nested lists, sets, frozensets, dicts: the unhashable and odd shapes of issue 9.
ANYTHING = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                        | st.frozensets(SCALARS, max_size=3) | st.sets(SCALARS, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)

EXTRA_RULE = st.fixed_dictionaries(
    {"port": PORTISH | st.lists(PORTISH, max_size=17)},
    optional={"proto": st.sampled_from(["tcp", "udp", "sctp", ""]) | NASTY_TEXT,
              "sources": st.lists(ADDRESSES, max_size=3) | ADDRESSES,
              "comment": NASTY_TEXT,
              "action": st.sampled_from(["allow", "deny", "reject", "limit", "drop"]) | NASTY_TEXT})

VALUES = {
    "froxlor_roles": st.lists(st.sampled_from(["web", "ftp", "dns", "ssh", "imap", "pop3", "smtp",
                                               "mysql", "mail", "wbe", ""]) | NASTY_TEXT,
                              max_size=5) | ANYTHING,
    "ftp_passive_ports": st.tuples(PORTISH, PORTISH) | ANYTHING,
    "ftp_masquerade_address": ADDRESSES | st.sampled_from(["ftp.example.net", "a..b", "x" * 300])
    | ANYTHING,
    "ftp_daemon": st.sampled_from(["auto", "proftpd", "pureftpd", "pure-ftpd", "vsftpd"]) | ANYTHING,
    "ssh_port": PORTISH | ANYTHING,
    "ssh_allowed_sources": st.lists(ADDRESSES, max_size=3) | ANYTHING,
    "ssh_rate_limit": st.booleans() | ANYTHING,
    "web_http3": st.booleans() | ANYTHING,
    "mysql_allowed_sources": st.lists(ADDRESSES, max_size=3) | ANYTHING,
    "dns_transfer_sources": st.lists(ADDRESSES, max_size=3) | ANYTHING,
    "firewall_extra_rules": st.lists(EXTRA_RULE, max_size=3) | ANYTHING,
    "firewall_default_incoming": st.sampled_from(["allow", "deny", "reject", "drop"]) | ANYTHING,
    "firewall_default_outgoing": st.sampled_from(["allow", "deny", "reject"]) | ANYTHING,
    "firewall_logging": st.sampled_from(["off", "low", "full", "on"]) | ANYTHING,
    "firewall_enabled": st.booleans() | ANYTHING,
    "firewall_purge_unmanaged": st.booleans() | ANYTHING,
    "firewall_lockout_guard": st.booleans() | ANYTHING,
    "firewall_confirm_timeout": st.integers(-5, 300) | ANYTHING,
}
assert set(VALUES) == set(DEFAULTS)  # a new data key gets fuzzed too
TYPOS = st.dictionaries(st.sampled_from(["froxlor_role", "firewall_extra_rule", "ftp_passive_port",
                                         "ssh_allowed_source", "mysql_sources", "firewall_x",
                                         "ssh_ratelimit", "web_http"]),
                        ANYTHING, max_size=1)
# Other deploys' keys in the same inventory: never an error, their values never shown.
FOREIGN_SECRET = "foreign-s3cret"
FOREIGN = st.dictionaries(st.sampled_from(["mysql_root_password", "ftp_users", "firewall_backend",
                                           "froxlor_admin_password", "ssh_password"]),
                          st.just(FOREIGN_SECRET), max_size=2)
LAYER = st.builds(lambda known, typos, foreign: {**known, **typos, **foreign},
                  st.fixed_dictionaries({}, optional=VALUES), TYPOS, FOREIGN)
LINE = re.compile(r"host h1(?: \((?:--data|group \w+)\))?: (\w+)(?: = .+)?: .+")


def unquoted(command: StringCommand) -> list[str]:
    """The shell words the remote shell would see."""
    return shlex.split(command.get_raw_value())


def _commands(plan) -> tuple[list, list]:
    fragment = ftpplan.fragment_for(plan)
    with fake_host(build_fact({"scenario": "hand-made-mixed"}), stage=StateStage.Execute):
        commands = list(rules_and_policies._inner(
            rules=plan.rules, incoming=plan.incoming, outgoing=plan.outgoing,
            logging=plan.logging, enabled=plan.enabled, purge_unmanaged=plan.purge_unmanaged))
        frag_commands = list(ftp.passive_ports_fragment._inner(content=fragment))
    return commands, frag_commands


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(override=LAYER, host_data=LAYER, group=LAYER, other_group=LAYER, all_data=LAYER)
def test_any_data_gives_clear_errors_or_a_valid_quoted_plan(override, host_data, group,
                                                            other_group, all_data) -> None:
    inventory = make_inventory({"web_servers": ([("h1", host_data)], group),
                                "db_servers": (["h1"], other_group)},
                               all_data=all_data, override=override)
    try:
        plan = check_inventory(inventory)["h1"]
    except FleetDataError as e:  # the only exception bad data may raise
        event("errors")
        assert e.errors
        for line in e.errors:
            match = LINE.fullmatch(line)
            assert match and "\n" not in line, line
            assert FOREIGN_SECRET not in line, line
            assert match[1] in DEFAULTS or near_miss(match[1]), line
        return
    event("plan" + (" with a user comment" if any(r.note for r in plan.rules) else ""))
    assert "ssh" in plan.roles
    # Sources naming a group (both hold h1) become h1's addresses, as at deploy time.
    h1 = Member("h1", "h1", ("10.0.0.5", "2001:db8::5"))
    resolved = resolve_groups(plan, {"web_servers": [h1], "db_servers": [h1]})
    assert not any(r.source and r.source.startswith("@") for r in resolved.plan.rules)
    if resolved.errors:  # a group address that another rule acts on otherwise
        event("group errors")
        assert all(LINE.fullmatch(line) for line in resolved.errors), resolved.errors
        return
    plan = resolved.plan
    commands, frag_commands = _commands(plan)
    fragment = ftpplan.fragment_for(plan)
    install = {hostprogram.INSTALL_UFW, "sh", "-c"}
    for command in commands + frag_commands:
        if isinstance(command, StringCommand):
            # apt installing ufw: nothing of the data in it
            assert set(unquoted(command)) <= install, unquoted(command)
            continue
        if command.function.__name__ != "_transaction":
            continue  # a refusal (lockout guard, no ProFTPd): fails the host, carries no data
        # the request reaches the host program on stdin, never through a shell; each rule
        # travels as structured fields, and ufw parses its argv
        request = json.loads(command.args[0])
        if request["ufw"] is not None:
            assert request["ufw"]["wanted"] == [want(spec).to_wire() for spec in plan.rules]
        if request["ftp"] is not None:
            assert request["ftp"]["content"] == fragment
            assert request["ftp"]["path"].startswith("/etc/proftpd/conf.d/")


# --- (b) valid plans, hostile values ----------------------------------------------------

# Every character class ufw stores unchanged and we accept: letters, marks, numbers,
# punctuation, symbols and the space - everything printable except "'".
COMMENT_CHARS = st.characters(categories=["L", "M", "N", "P", "S"], exclude_characters="'") \
    | st.just(" ")
COMMENTS = (st.text(COMMENT_CHARS, min_size=1, max_size=120)
            | st.sampled_from(['$(reboot)', '`id`', '"', '\\', '--help', '-rf', '%s', '${IFS}',
                               'comment', 'in', 'log', 'a;b|c&d', 'comment=41', '# x'])
            ).filter(str.strip)


# A /0 is refused (anywhere: an empty source list), so valid masks start at /1.
def _v4_source(ip: ipaddress.IPv4Address) -> st.SearchStrategy[str]:
    masks = st.one_of(st.just(""), st.integers(1, 32).map(lambda n: f"/{n}"),
                      st.integers(1, 32).map(
                          lambda n: f"/{ipaddress.IPv4Network(f'0.0.0.0/{n}').netmask}"))
    return st.sampled_from([str(ip), f"::{ip}"]).flatmap(
        lambda text: masks.map(lambda m: text + m) if ":" not in text
        else st.one_of(st.just(""), st.integers(1, 128).map(lambda n: f"/{n}")).map(
            lambda m: text + m))


def _v6_source(ip: ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    masks = st.one_of(st.just(""), st.integers(1, 128).map(lambda n: f"/{n}"))
    return st.tuples(st.sampled_from([str(ip), str(ip).upper(), ip.exploded]), masks).map("".join)


SOURCES = (st.ip_addresses(v=4).flatmap(_v4_source)
           | st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).flatmap(_v6_source))
# Ports 4000-39999: never the catalog's (so a user rule is never shadowed by a role's
# rule for the same slot), never the passive range (40000 and up).
PORT_ITEMS = st.integers(4000, 39998).flatmap(
    lambda low: st.sampled_from([low, str(low)]) | st.integers(low + 1, 39999).map(
        lambda high: f"{low}:{high}"))
EXTRA = st.fixed_dictionaries(
    {"port": st.lists(PORT_ITEMS, min_size=1, max_size=7) | PORT_ITEMS, "comment": COMMENTS},
    optional={"proto": st.sampled_from(["tcp", "udp"]),
              "sources": st.lists(SOURCES, max_size=3)})
NAMES = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?)"
                      r"{0,3}\.[a-zA-Z]{2,10}\.?", fullmatch=True)
MASQUERADE = st.none() | st.ip_addresses().map(str) | st.ip_addresses(v=4).map(
    lambda ip: f"::ffff:{ip}") | NAMES


@st.composite
def valid_data(draw) -> dict:
    roles = draw(st.lists(st.sampled_from(VALID_ROLES), max_size=4))
    # one action for all of them: two extra rules on one slot must not act differently
    action = draw(st.sampled_from(["allow", "deny", "reject", "limit"]))
    data = {"froxlor_roles": roles,
            "firewall_extra_rules": [{**rule, "action": action}
                                     for rule in draw(st.lists(EXTRA, min_size=1, max_size=4))],
            "ssh_rate_limit": draw(st.booleans()),
            "web_http3": draw(st.booleans()),
            "ssh_port": draw(st.sampled_from([22, 222, 1022])),
            "ssh_allowed_sources": draw(st.lists(SOURCES, max_size=3)),
            "ftp_masquerade_address": draw(MASQUERADE),
            "firewall_lockout_guard": draw(st.booleans())}
    if "mysql" in roles:
        data["mysql_allowed_sources"] = draw(st.lists(SOURCES, min_size=1, max_size=3))
    if "ftp" in roles:
        low = draw(st.integers(40000, 65534))
        data["ftp_passive_ports"] = (low, draw(st.integers(low + 1, 65535)))
    return data


def assert_stored_as_planned(spec) -> None:
    """The rule as the request carries it to the host, parsed by ufw's real parser."""
    wire = json.loads(json.dumps(want(spec).to_wire()))
    stored = ufw_tuples(Want(**wire).ufw_args())
    assert stored == ours(spec), spec
    for family, text in stored:
        rule = parse_tuple_line(f"### tuple ### {text}", family)
        assert rule is not None
        assert (rule.comment, rule.src, rule.dport, rule.proto) == \
            (spec.comment, spec.source or ANY[family], spec.dport, spec.proto)
        # read back as ufw 0.36's strict decoder does
        assert bytes.fromhex(text.split(" comment=")[1]).decode("utf-8") == spec.comment


def assert_fragment_as_written(plan) -> None:
    fragment = ftpplan.fragment_for(plan)
    if fragment is None:
        return
    low, high = plan.passive_ports
    masq = plan.masquerade_address
    assert directives(fragment) == [f"PassivePorts {low} {high}"] + (
        [f"MasqueradeAddress {masq}"] if masq else [])
    try:
        ipaddress.ip_address(masq or "0.0.0.0")
    except ValueError:
        return  # a DNS name: -t would ask the resolver; test_conformance checks names
    with tempfile.TemporaryDirectory() as tmp:
        ok, out = proftpd_check(Path(tmp), fragment)
    assert ok, out
    if masq:
        assert f"masquerading as {masq}\n" in out  # ProFTPd read it as written


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=valid_data())
def test_valid_plans_with_hostile_values_round_trip_through_ufw_and_proftpd(data) -> None:
    need(ufw, "ufw")
    need(PROFTPD, "proftpd")
    plan, errors = resolve("h1", [("group web_servers", data)])
    assert plan is not None and not errors, errors  # valid by construction
    noted = [r for r in plan.rules if r.note]
    assert noted  # every example carries user comments to ufw
    families = {ipaddress.ip_network(r.source, strict=False).version
                for r in plan.rules if r.source}
    event(f"sources: {sorted(families)}")
    event("masquerade: " + ("none" if not plan.masquerade_address else
                            "ip" if ":" in plan.masquerade_address or
                            plan.masquerade_address[-1].isdigit() else "name"))
    for spec in plan.rules:
        assert_stored_as_planned(spec)
    assert_fragment_as_written(plan)
