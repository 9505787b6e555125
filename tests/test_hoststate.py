"""The fact against output captured from real ufw 0.36.2 (tests/fixtures/capture.py)."""

from froxlor_fleet.hoststate import FleetHostState, parse_state
from froxlor_fleet.ufwrules import parse_tuple_line
from helpers import UFW_FIXTURES, fact_lines, with_fragment


def test_pristine_ufw() -> None:
    state = parse_state(fact_lines("pristine"))
    ufw = state.ufw
    assert ufw.installed and not ufw.conf_enabled and not ufw.running and not ufw.active
    assert (ufw.incoming, ufw.outgoing, ufw.logging, ufw.ipv6) == ("deny", "allow", "low", True)
    assert ufw.rules == []
    assert (state.ssh_client, state.ssh_server, state.ssh_port) == ("10.213.77.1", "10.213.77.11", 22)
    assert state.fragment is None and state.fragment_sha256 is None


def test_converged_host_is_active_with_marked_rules() -> None:
    ufw = parse_state(fact_lines("converged-web-ftp")).ufw
    assert ufw.active
    assert [(r.family, r.dport, r.label) for r in ufw.rules] == [
        (4, "21", "ftp"), (4, "49152:65534", "ftp"), (4, "22", "ssh"), (4, "80,443", "web"),
        (6, "21", "ftp"), (6, "49152:65534", "ftp"), (6, "22", "ssh"), (6, "80,443", "web"),
    ]


def test_hand_made_rules_policies_and_logging() -> None:
    ufw = parse_state(fact_lines("hand-made-mixed")).ufw
    assert (ufw.incoming, ufw.logging) == ("reject", "medium")
    by_text = {(r.family, r.describe()): r for r in ufw.rules}
    assert by_text[(4, "allow 8080/tcp")].comment == "hand made"
    assert not by_text[(4, "allow 8080/tcp")].managed
    assert by_text[(4, "allow 3306/tcp from 10.0.0.0/8")].label == "mysql"
    assert by_text[(6, "allow 3306/tcp from 2001:db8::/32")].managed
    assert (4, "deny any from 203.0.113.7") in by_text
    assert by_text[(4, "allow 53/udp [in_eth0]")].iface == "in_eth0"
    assert by_text[(4, "allow OpenSSH/tcp")].dapp == "OpenSSH"
    assert by_text[(4, "limit 2222/tcp")].verdict == "limit"
    route = [r for r in ufw.rules if r.action.startswith("route:")]
    assert len(route) == 1 and route[0].iface == "in_eth0!out_eth1"


def test_tuple_text_round_trips_every_captured_line() -> None:
    lines = 0
    for rules_file in UFW_FIXTURES.glob("*/user*.rules"):
        family = 6 if rules_file.name == "user6.rules" else 4
        for line in rules_file.read_text().splitlines():
            if line.startswith("### tuple ###"):
                rule = parse_tuple_line(line, family)
                assert rule is not None
                assert "### tuple ### " + rule.tuple_text() == line
                lines += 1
    assert lines >= 20


def test_fragment_is_read_exactly() -> None:
    text = "# header\nPassivePorts 50000 50100\n"
    state = parse_state(with_fragment(fact_lines("pristine"), text))
    assert state.fragment == text
    import hashlib
    assert state.fragment_sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_fact_command_quotes_the_fragment_path() -> None:
    command = FleetHostState().command(fragment_path="/etc/proftpd/conf.d/a b;rm -rf x").get_raw_value()
    assert (" froxlor-fleet '/etc/proftpd/conf.d/a b;rm -rf x'"
            " /var/lib/froxlor-fleet/proftpd-fragment.loaded ; ") in command
    assert "ufw status" not in command  # shows nothing while inactive: read the files


def test_default_is_an_empty_state() -> None:
    assert FleetHostState.default().ufw.rules == []
