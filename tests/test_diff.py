"""What ``--diff`` shows, and the warnings printed on every run.

Unit tests of ``ufw.rule_diff_lines`` and of what the operations log through
pyinfra's logger: the UFW change lines (``ufw._report``), the "keeps unmanaged UFW
rule" warning (once per run, also without ``--diff``) and the ProFTPd fragment diff.
Facts come from the captured ufw 0.36.2 scenarios (tests/fixtures), as in
test_operations.py. Colours are on (``click.style``, as pyinfra's CLI sets them) and
stripped before lines are compared; one test checks the colours themselves.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import click
import pytest
from pyinfra.api.state import StateStage

from froxlor_fleet.facts import parse_state
from froxlor_fleet.model.catalog import FRAGMENT_PATH
from froxlor_fleet.model.plan import RuleSpec
from froxlor_fleet.model.ufwrules import plan_rules
from froxlor_fleet.operations import ftp, ftpplan, ufw
from helpers import build_fact, fake_host

try:  # pyinfra >= 3.10: plain text unless the CLI installs click.style
    from pyinfra.api import output
except ImportError:  # older: format_text is click.style already
    output = None

ANSI = re.compile(r"\x1b\[[0-9;]*m")
GREEN, RED, YELLOW = "\x1b[32m", "\x1b[31m", "\x1b[33m"
PREFIX = "[testhost] "
KEEP_HINT = " (set firewall_purge_unmanaged = True to remove)"


def plain(text: str) -> str:
    return ANSI.sub("", text)


def tcp(*ports: str, label: str, source: str | None = None, note: str = "",
        action: str = "allow", proto: str = "tcp") -> RuleSpec:
    return RuleSpec(tuple(ports), proto, source, label, note, action)


SSH, WEB = tcp("22", label="ssh"), tcp("80", "443", label="web")
FTP = [tcp("21", label="ftp"), tcp("49152:65534", label="ftp")]
CONVERGED = [*FTP, SSH, WEB]  # what converged-web-ftp holds
MYSQL = [tcp("3306", label="mysql", source="10.0.0.0/8"),
         tcp("3306", label="mysql", source="2001:db8::/32")]


@dataclass
class Record:
    level: int
    raw: str

    @property
    def text(self) -> str:
        return plain(self.raw)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[Record] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(Record(record.levelno, record.getMessage()))

    def texts(self, level: int | None = None) -> list[str]:
        return [r.text for r in self.records if level is None or r.level == level]


@pytest.fixture
def log() -> Iterator[Capture]:
    """pyinfra's logger, captured; colours on as under pyinfra's CLI."""
    logger = logging.getLogger("pyinfra")
    handler, level = Capture(), logger.level
    previous_formatter = output._format_text if output else None
    if output:
        output.set_formatter(click.style)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        if output:
            output.set_formatter(previous_formatter)


def run(op, facts: dict, *, diff: bool = True, stage: StateStage = StateStage.Prepare,
        check_for_changes: bool = True, **kwargs) -> int:
    """Run an operation's body on a fake host; the number of commands it yields (the
    host program's placement, when the facts have none placed, is in the transaction's)."""
    if op is ufw.rules_and_policies:  # these tests are about the rule lines;
        kwargs.setdefault("confirm_timeout", 0)  # commit-confirmed has its own test
    with fake_host(build_fact(facts), diff=diff, stage=stage) as (host, _noops):
        host.state.check_for_changes = check_for_changes
        return len(list(op._inner(**kwargs)))


def ufw_diff(log: Capture) -> list[str]:
    """The ``Will change UFW`` block: its indented lines (``[]``: no block)."""
    texts = log.texts(logging.INFO)
    if PREFIX + "Will change UFW" not in texts:
        return []
    start = texts.index(PREFIX + "Will change UFW") + 1
    end = texts.index("", start)  # the block ends with an empty line
    assert all(t.startswith("  ") for t in texts[start:end]), texts[start:end]
    return [t[2:] for t in texts[start:end]]


def kept(log: Capture) -> list[str]:
    prefix = PREFIX + "keeps unmanaged UFW rule: "
    return [t[len(prefix):] for t in log.texts(logging.WARNING) if t.startswith(prefix)]


# --- rule_diff_lines ---------------------------------------------------------------------

def diff_lines(facts: dict, rules: list[RuleSpec], purge: bool = False) -> list[str]:
    state = parse_state(build_fact(facts)).ufw
    return ufw.rule_diff_lines(plan_rules(state.rules, rules, state.ipv6, purge), state)


def test_added_rule_one_line_for_v4_and_v6(log: Capture) -> None:
    lines = diff_lines({"scenario": "pristine"}, [SSH, WEB])
    assert [plain(line) for line in lines] == ["+ allow 22/tcp  (ssh)", "+ allow 80,443/tcp  (web)"]
    assert all(line.startswith(GREEN) for line in lines)


def test_added_rule_with_source_and_note() -> None:
    lines = diff_lines({"scenario": "pristine"},
                       [*MYSQL, tcp("8443", label="extra", note="panel")])
    assert [plain(line) for line in lines] == [
        "+ allow 3306/tcp from 10.0.0.0/8  (mysql)",
        "+ allow 3306/tcp from 2001:db8::/32  (mysql)",
        "+ allow 8443/tcp  (extra)",  # the label, not the operator's note
    ]


def test_nothing_to_change_no_lines() -> None:
    assert diff_lines({"scenario": "converged-web-ftp"}, CONVERGED) == []


def test_removed_role_one_line_per_rule(log: Capture) -> None:
    lines = diff_lines({"scenario": "converged-web-ftp"}, [SSH, WEB])
    assert [plain(line) for line in lines] == ["- allow 21/tcp  (ftp)",
                                               "- allow 49152:65534/tcp  (ftp)"]
    assert all(line.startswith(RED) for line in lines)


def test_v6_half_alone_is_marked_v6() -> None:
    facts = {"scenario": "converged-web-ftp", "rules4": [],
             "rules6": ["### tuple ### allow tcp 21 ::/0 any ::/0 in "
                        "comment=66726f786c6f722d666c6565743a667470"]}
    assert [plain(line) for line in diff_lines(facts, [])] == ["- allow 21/tcp (v6)  (ftp)"]


def test_purge_names_unmanaged_rules() -> None:
    lines = diff_lines({"scenario": "hand-made-mixed"}, [SSH, *MYSQL], purge=True)
    assert [plain(line) for line in lines] == [
        "~ allow 22/tcp  (unmanaged -> ssh)",
        "- allow 8080/tcp  (unmanaged, purge)",
        "- deny any from 203.0.113.7  (unmanaged, purge)",
        "- allow 53/udp [in_eth0]  (unmanaged, purge)",
        "- limit 2222/tcp  (unmanaged, purge)",
        "- allow OpenSSH/tcp  (unmanaged, purge)",
        "- route:allow 80/tcp to 10.0.0.0/8 [in_eth0!out_eth1]  (unmanaged, purge)",
    ]


def test_retag_shows_old_and_new_label(log: Capture) -> None:
    lines = diff_lines({"scenario": "converged-web-ftp"},
                       [*FTP, SSH, tcp("80", "443", label="extra")])
    assert [plain(line) for line in lines] == ["~ allow 80,443/tcp  (web -> extra)"]
    assert lines[0].startswith(YELLOW)


def test_retag_of_hand_made_limit_keeps_limit() -> None:
    """A hand-made ``limit`` on the wanted port stays ``limit``: the line says so."""
    lines = diff_lines({"scenario": "hand-made-mixed"}, [SSH, *MYSQL, tcp("2222", label="ssh")])
    assert [plain(line) for line in lines] == ["~ allow 22/tcp  (unmanaged -> ssh)",
                                               "~ limit 2222/tcp  (unmanaged -> ssh)"]


def test_new_deny_and_reject_say_they_come_before_the_allows(log: Capture) -> None:
    lines = diff_lines({"scenario": "converged-web-ftp"}, [
        *CONVERGED, tcp("80", label="extra", source="203.0.113.0/24", action="deny"),
        tcp("8443", label="extra"),
        tcp("3306", label="extra", source="2001:db8::/32", action="reject", note="abuse")])
    # in the order ufw will hold them: the prepended ones first, in the data's order
    assert [plain(line) for line in lines] == [
        "+ deny 80/tcp from 203.0.113.0/24  (extra, before allows)",
        "+ reject 3306/tcp from 2001:db8::/32  (extra, before allows)",
        "+ allow 8443/tcp  (extra)",
    ]
    assert all(line.startswith(GREEN) for line in lines)


def test_limit_and_http3_lines() -> None:
    lines = diff_lines({"scenario": "converged-web-ftp"}, [
        *CONVERGED, tcp("2222", label="extra", action="limit"),
        tcp("443", label="web", proto="udp")])
    assert [plain(line) for line in lines] == ["+ limit 2222/tcp  (extra)",
                                               "+ allow 443/udp  (web)"]


def test_ssh_rate_limit_on_and_off_shows_the_action_change(log: Capture) -> None:
    limited = tcp("22", label="ssh", action="limit")
    lines = diff_lines({"scenario": "converged-web-ftp"}, [*FTP, limited, WEB])
    assert [plain(line) for line in lines] == ["~ limit 22/tcp  (ssh: allow -> limit)"]
    assert lines[0].startswith(YELLOW)
    rate_limited = {"scenario": "converged-web-ftp", "rules6": [], "rules4": [
        "### tuple ### limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment="
        + b"froxlor-fleet:ssh rate-limit".hex()]}
    lines = diff_lines(rate_limited, [SSH])
    assert [plain(line) for line in lines] == ["~ allow 22/tcp  (ssh: limit -> allow)"]


def test_deny_taking_over_a_hand_made_allow_is_updated_in_place() -> None:
    facts = {"scenario": "converged-web-ftp", "rules6": [], "rules4": [
        "### tuple ### allow tcp 8080 0.0.0.0/0 any 192.0.2.0/24 in"]}
    lines = diff_lines(facts, [tcp("8080", label="extra", source="192.0.2.0/24", action="deny")])
    assert [plain(line) for line in lines] == [
        "~ deny 8080/tcp from 192.0.2.0/24  (unmanaged allow -> extra deny)"]


def test_deny_behind_an_allow_that_matches_first_says_so() -> None:
    """ufw updates the slot's old rule in place: an allow before it still matches first."""
    facts = {"scenario": "converged-web-ftp", "rules6": [
        "### tuple ### allow tcp 8080 ::/0 any ::/0 in "
        "comment=66726f786c6f722d666c6565743a6578747261"], "rules4": [
        "### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in "
        "comment=66726f786c6f722d666c6565743a6578747261",
        "### tuple ### allow tcp 8080 0.0.0.0/0 any 192.0.2.0/24 in "
        "comment=66726f786c6f722d666c6565743a6578747261"]}
    lines = diff_lines(facts, [tcp("8080", label="extra"),
                               tcp("8080", label="extra", source="192.0.2.0/24", action="deny")])
    assert [plain(line) for line in lines] == [
        "~ deny 8080/tcp from 192.0.2.0/24  (extra: allow -> deny; stays after allow 8080/tcp, "
        "which matches first: delete it by hand and run again to put it first)"]


def test_removed_deny_line() -> None:
    facts = {"scenario": "converged-web-ftp", "rules6": [], "rules4": [
        "### tuple ### deny tcp 80 0.0.0.0/0 any 203.0.113.0/24 in "
        "comment=66726f786c6f722d666c6565743a6578747261"]}
    assert [plain(line) for line in diff_lines(facts, [])] == [
        "- deny 80/tcp from 203.0.113.0/24  (extra)"]


def test_ipv6_no_describes_v4_only() -> None:
    facts = {"scenario": "pristine", "default": {"IPV6": "no"}}
    assert [plain(line) for line in diff_lines(facts, [SSH])] == ["+ allow 22/tcp  (ssh)"]


# --- the UFW block under --diff ----------------------------------------------------------

def test_first_rollout(log: Capture) -> None:
    assert run(ufw.rules_and_policies, {"scenario": "pristine"}, rules=CONVERGED) == 1
    assert ufw_diff(log) == [
        "+ allow 21/tcp  (ftp)",
        "+ allow 49152:65534/tcp  (ftp)",
        "+ allow 22/tcp  (ssh)",
        "+ allow 80,443/tcp  (web)",
        "~ ufw: inactive -> active",
    ]
    assert kept(log) == []


def test_policy_and_logging(log: Capture) -> None:
    run(ufw.rules_and_policies, {"scenario": "converged-web-ftp"}, rules=CONVERGED,
        incoming="reject", outgoing="deny", logging="medium")
    assert ufw_diff(log) == [
        "~ default incoming: deny -> reject",
        "~ default outgoing: allow -> deny",
        "~ logging: low -> medium",
    ]
    block = [r.raw for r in log.records if r.raw.startswith("  ")]
    assert all(YELLOW in line for line in block)


def test_hand_made_host_all_kinds_of_lines(log: Capture) -> None:
    run(ufw.rules_and_policies, {"scenario": "hand-made-mixed"}, rules=[SSH, *MYSQL])
    assert ufw_diff(log) == [
        "~ allow 22/tcp  (unmanaged -> ssh)",
        "~ default incoming: reject -> deny",
        "~ logging: medium -> low",
        "~ ufw: inactive -> active",
    ]


def test_enabled_but_not_loaded(log: Capture) -> None:
    run(ufw.rules_and_policies, {"scenario": "converged-web-ftp", "running": "no"},
        rules=CONVERGED)
    assert ufw_diff(log) == ["~ ufw: inactive -> active"]


def test_disable(log: Capture) -> None:
    run(ufw.rules_and_policies, {"scenario": "converged-web-ftp"}, rules=CONVERGED,
        enabled=False)
    assert ufw_diff(log) == ["~ ufw: active -> inactive"]


def test_install_first(log: Capture) -> None:
    assert run(ufw.rules_and_policies, {"scenario": "pristine", "ufw": []},
               rules=[SSH]) == 2  # apt installs ufw, then the transaction
    assert ufw_diff(log) == ["+ install ufw", "+ allow 22/tcp  (ssh)", "~ ufw: inactive -> active"]
    assert next(r.raw for r in log.records if "install ufw" in r.raw).startswith("  " + GREEN)


def test_commit_confirmed_is_announced(log: Capture) -> None:
    """--dry --diff says a change will be confirmed, and within what time; a change that
    can't affect SSH (logging only) is not armed, so it says nothing."""
    assert run(ufw.rules_and_policies, {"scenario": "converged-web-ftp", "running": "no"},
               rules=CONVERGED, confirm_timeout=45) == 1  # the transaction confirms itself
    assert ufw_diff(log) == [
        "~ ufw: inactive -> active",
        "~ commit-confirmed: a new SSH connection must confirm within 45 s, else the host "
        "restores its previous UFW",
    ]
    log.records.clear()
    assert run(ufw.rules_and_policies, {"scenario": "converged-web-ftp"},
               rules=CONVERGED, logging="medium", confirm_timeout=45) == 1
    assert ufw_diff(log) == ["~ logging: low -> medium"]


def test_no_block_when_nothing_changes(log: Capture) -> None:
    assert run(ufw.rules_and_policies, {"scenario": "converged-web-ftp"},
               rules=CONVERGED) == 0
    assert log.texts() == []  # (fake_host collects host.noop's line apart)


def test_no_block_without_diff(log: Capture) -> None:
    assert run(ufw.rules_and_policies, {"scenario": "pristine"}, diff=False,
               rules=CONVERGED) == 1
    assert log.texts() == []


def test_block_printed_once_per_run(log: Capture) -> None:
    """Detection prints it; execution does not, unless detection was skipped (-y)."""
    facts = {"scenario": "converged-web-ftp", "running": "no"}
    run(ufw.rules_and_policies, facts, stage=StateStage.Execute, rules=CONVERGED)
    assert ufw_diff(log) == []
    run(ufw.rules_and_policies, facts, stage=StateStage.Execute, check_for_changes=False,
        rules=CONVERGED)
    assert ufw_diff(log) == ["~ ufw: inactive -> active"]


def test_refused_plan_shows_its_diff_then_the_refusal(log: Capture) -> None:
    run(ufw.rules_and_policies, {"scenario": "converged-web-ftp"},
        rules=[tcp("2222", label="ssh")])
    assert ufw_diff(log)[0] == "+ allow 2222/tcp  (ssh)"
    assert log.texts(logging.WARNING)[-1].startswith(PREFIX + "will fail: lockout guard: ")


# --- keeps unmanaged UFW rule ------------------------------------------------------------

HAND_MADE_KEPT = [
    "allow 8080/tcp  # hand made" + KEEP_HINT,
    "deny any from 203.0.113.7" + KEEP_HINT,
    "allow 53/udp [in_eth0]" + KEEP_HINT,
    "limit 2222/tcp" + KEEP_HINT,
    "allow OpenSSH/tcp" + KEEP_HINT,
    "route:allow 80/tcp to 10.0.0.0/8 [in_eth0!out_eth1]" + KEEP_HINT,
]


@pytest.mark.parametrize("diff", [True, False], ids=["diff", "no-diff"])
def test_kept_rules_warned_with_and_without_diff(log: Capture, diff: bool) -> None:
    run(ufw.rules_and_policies, {"scenario": "hand-made-mixed"}, diff=diff,
        rules=[SSH, *MYSQL])
    assert kept(log) == HAND_MADE_KEPT  # v4 and v6 halves: one line
    assert all(r.level == logging.WARNING for r in log.records if "keeps unmanaged" in r.raw)


def test_kept_rules_warned_once_per_run(log: Capture) -> None:
    facts = {"scenario": "hand-made-mixed"}
    run(ufw.rules_and_policies, facts, rules=[SSH, *MYSQL])  # detection
    run(ufw.rules_and_policies, facts, stage=StateStage.Execute, rules=[SSH, *MYSQL])
    assert kept(log) == HAND_MADE_KEPT
    log.records.clear()
    run(ufw.rules_and_policies, facts, stage=StateStage.Execute,  # -y: no detection
        check_for_changes=False, rules=[SSH, *MYSQL])
    assert kept(log) == HAND_MADE_KEPT


def test_kept_rules_warned_on_a_converged_host(log: Capture) -> None:
    """Nothing to change, yet the operator still hears about the rules left alone."""
    facts = {"scenario": "converged-web-ftp",
             "rules4": ["### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in "
                        "comment=66726f786c6f722d666c6565743a737368",
                        "### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in"],
             "rules6": ["### tuple ### allow tcp 22 ::/0 any ::/0 in "
                        "comment=66726f786c6f722d666c6565743a737368",
                        "### tuple ### allow tcp 9090 ::/0 any ::/0 in"]}
    assert run(ufw.rules_and_policies, facts, rules=[SSH]) == 0
    assert kept(log) == ["allow 8080/tcp" + KEEP_HINT, "allow 9090/tcp (v6)" + KEEP_HINT]
    assert ufw_diff(log) == []


def test_no_kept_warning_when_purging(log: Capture) -> None:
    run(ufw.rules_and_policies, {"scenario": "hand-made-mixed"}, rules=[SSH, *MYSQL],
        purge_unmanaged=True)
    assert kept(log) == []


def test_inert_v6_rules_warned(log: Capture) -> None:
    run(ufw.rules_and_policies, {"scenario": "converged-web-ftp", "default": {"IPV6": "no"}},
        rules=CONVERGED)
    assert log.texts(logging.WARNING) == [
        PREFIX + "leaves 4 IPv6 rule(s) in user6.rules alone: IPV6=no, ufw ignores them"]


# --- the ProFTPd fragment ----------------------------------------------------------------

OLD = ftpplan.render_fragment((49152, 65534))
NEW = ftpplan.render_fragment((50000, 50100))
HEADER = OLD.splitlines()[:3]


def fragment_diff(log: Capture) -> tuple[str, list[str]]:
    """The ``Will ...`` line and the diff lines under it."""
    texts = log.texts(logging.INFO)
    start = next(i for i, t in enumerate(texts) if t.startswith(PREFIX + "Will "))
    end = texts.index("", start)
    assert all(t.startswith("  ") for t in texts[start + 1:end])
    return texts[start][len(PREFIX):], [t[2:] for t in texts[start + 1:end]]


def test_fragment_create(log: Capture) -> None:
    assert run(ftp.passive_ports_fragment, {"scenario": "pristine"}, content=OLD) == 1
    assert fragment_diff(log) == (f"Will create {FRAGMENT_PATH}", [
        "@@ -0,0 +1,4 @@", *("+ " + line for line in OLD.splitlines())])


def test_fragment_modify(log: Capture) -> None:
    run(ftp.passive_ports_fragment, {"scenario": "pristine", "fragment": OLD}, content=NEW)
    assert fragment_diff(log) == (f"Will modify {FRAGMENT_PATH}", [
        "@@ -2,3 +2,3 @@",
        *("  " + line for line in HEADER[1:]),
        "- PassivePorts 49152 65534",
        "+ PassivePorts 50000 50100",
    ])
    raw = [r.raw for r in log.records]
    assert any(line.startswith("  " + RED + "- PassivePorts") for line in raw)
    assert any(line.startswith("  " + GREEN + "+ PassivePorts") for line in raw)


@pytest.mark.parametrize("proftpd_facts", [{}, {"proftpd": []}], ids=["proftpd", "no-proftpd"])
def test_fragment_remove(log: Capture, proftpd_facts: dict) -> None:
    run(ftp.passive_ports_fragment, {"scenario": "pristine", "fragment": OLD, **proftpd_facts},
        content=None)
    assert fragment_diff(log) == (f"Will remove {FRAGMENT_PATH}", [
        "@@ -1,4 +0,0 @@", *("- " + line for line in OLD.splitlines())])


def test_fragment_trailing_space_shows_a_change(log: Capture) -> None:
    run(ftp.passive_ports_fragment,
        {"scenario": "pristine", "fragment": "PassivePorts 50000 50100 \n"},
        content="PassivePorts 50000 50100\n")
    verb, lines = fragment_diff(log)
    assert verb == f"Will modify {FRAGMENT_PATH}"
    assert lines[0] == "@@ -1 +1 @@" and lines[1].startswith("- ") and lines[2].startswith("+ ")


@pytest.mark.xfail(strict=True, reason="pyinfra's generate_color_diff strips trailing "
                   "whitespace, so the - and + lines of a whitespace-only drift look the same")
def test_fragment_trailing_space_is_visible(log: Capture) -> None:
    run(ftp.passive_ports_fragment,
        {"scenario": "pristine", "fragment": "PassivePorts 50000 50100 \n"},
        content="PassivePorts 50000 50100\n")
    _verb, lines = fragment_diff(log)
    assert lines[1][2:] != lines[2][2:]


def test_fragment_no_diff_when_unchanged(log: Capture) -> None:
    assert run(ftp.passive_ports_fragment, {"scenario": "pristine", "fragment": OLD},
               content=OLD) == 0
    assert log.texts() == []


def test_fragment_no_diff_without_flag(log: Capture) -> None:
    assert run(ftp.passive_ports_fragment, {"scenario": "pristine"}, diff=False,
               content=OLD) == 1
    assert log.texts() == []


def test_fragment_diff_once_per_run(log: Capture) -> None:
    facts = {"scenario": "pristine", "fragment": OLD}
    run(ftp.passive_ports_fragment, facts, stage=StateStage.Execute, content=NEW)
    assert log.texts() == []
    run(ftp.passive_ports_fragment, facts, stage=StateStage.Execute,
        check_for_changes=False, content=NEW)
    assert fragment_diff(log)[0] == f"Will modify {FRAGMENT_PATH}"


NFT_WARNING = ("nftables.service is enabled and /etc/nftables.conf flushes the ruleset: "
               "at boot it wipes UFW's rules")


@pytest.mark.parametrize("facts", [
    {"scenario": "converged-web-ftp", "tenants": ["nftables-flush"]},  # nothing to change
    {"scenario": "pristine", "tenants": ["nftables-flush"]},  # a first rollout
])
def test_an_nftables_service_that_flushes_at_boot_is_named_once_per_run(
        log: Capture, facts: dict) -> None:
    """Issue 19: the host looks converged, and after a reboot UFW's rules are gone."""
    run(ufw.rules_and_policies, facts, rules=[SSH])  # detection
    run(ufw.rules_and_policies, facts, stage=StateStage.Execute, rules=[SSH])
    warned = [t for t in log.texts(logging.WARNING) if NFT_WARNING in t]
    assert len(warned) == 1, log.texts()


@pytest.mark.parametrize("tenant,words", [
    ("f2b-flushed", "MANAGE_BUILTINS=yes in /etc/default/ufw while fail2ban's f2b-* chains"),
    ("docker", "Docker is installed: ports its containers publish bypass UFW"),
])
def test_other_conflicts_are_named_once_per_run(log: Capture, tenant: str, words: str) -> None:
    facts = {"scenario": "converged-web-ftp", "tenants": [tenant]}
    run(ufw.rules_and_policies, facts, rules=[SSH])
    run(ufw.rules_and_policies, facts, stage=StateStage.Execute, rules=[SSH])
    assert len([t for t in log.texts(logging.WARNING) if words in t]) == 1, log.texts()


def test_no_nftables_warning_without_it(log: Capture) -> None:
    run(ufw.rules_and_policies, {"scenario": "converged-web-ftp"}, rules=[SSH])
    assert not [t for t in log.texts() if "nftables" in t]
