"""The package's rules held against the real parsers: ufw's own Python code (imported
from the system's ufw package) and ``proftpd -t``.

For sources, comments and ports: our validator accepts a value iff ufw's parser
accepts the rule built from it, except for a short, named list of values ufw takes but
would store so that the rule does not mean what it says (``DELIBERATE``); and the tuple
ufw would write is exactly the one our planner expects (``ufwrules.expand``), so a
second run finds every rule in place.

ufw versions: the code used here (src/parser.py UFWCommandRule.parse, src/common.py
UFWRule, src/util.py valid_address*/normalize_address/hex_encode/human_sort) is the
same in 0.36, 0.36.1 and 0.36.2, except ``hex_decode``, which is strict UTF-8 before
0.36.2; comments are checked to decode strictly, so all three read them back unchanged.

Skips only when ufw / proftpd are not installed and ``CI`` is not "true"; in CI a
missing tool fails.
"""

from __future__ import annotations

import gettext
import io
import ipaddress
import os
import platform
import re
import socket
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from froxlor_fleet.model import validation
from froxlor_fleet.model.plan import RuleSpec, port_weight, ufw_port_sort
from froxlor_fleet.model.ufwrules import expand, want
from froxlor_fleet.operations.ftpplan import render_fragment

UFW_HOME = Path("/usr/lib/python3/dist-packages")
IN_CI = os.environ.get("CI") == "true"


def _load_ufw() -> Any:
    if not (UFW_HOME / "ufw" / "parser.py").is_file():
        return None
    if str(UFW_HOME) not in sys.path:
        sys.path.append(str(UFW_HOME))  # appended: the venv's own packages still win
    # ufw's modules call _() at import and on errors: untranslated, as remote code does
    gettext.NullTranslations().install()
    with warnings.catch_warnings():  # ufw's regexes have unescaped "\d" (py3.12+ warns)
        warnings.simplefilter("ignore")
        import ufw.common
        import ufw.frontend
        import ufw.util

    return ufw


ufw = _load_ufw()
PROFTPD = next((p for p in ("/usr/sbin/proftpd", "/usr/local/sbin/proftpd")
                if os.access(p, os.X_OK)), None)


def need(tool: Any, name: str) -> None:
    """Skip without ``tool`` - except in CI, where a skipped proof is a failure."""
    if tool:
        return
    if IN_CI:
        pytest.fail(f"{name} is not installed; CI must run the conformance tests")
    pytest.skip(f"{name} is not installed")


# --- ufw as an oracle ---------------------------------------------------------------------

def ufw_tuples(argv: list[str]) -> list[tuple[int, str]] | None:
    """The ``### tuple ###`` bodies ufw would write for ``ufw <argv>`` (v4 and/or v6), or
    ``None`` when ufw refuses it. The same steps as ``ufw allow ...``: frontend
    parse_command, then per family set_v6 + normalize (backend set_rule), formatted as
    backend_iptables._write_rules does."""
    sink = io.TextIOWrapper(io.BytesIO())  # ufw's _print writes bytes to .buffer
    try:
        with redirect_stderr(sink), redirect_stdout(sink):
            parsed = ufw.frontend.parse_command(["ufw", *argv])
    except (Exception, SystemExit):  # ufw.util.error() exits on a UFWError
        return None
    rule, iptype = parsed.data["rule"], parsed.data["iptype"]
    found = []
    for family in {"v4": [4], "v6": [6], "both": [4, 6]}[iptype]:
        r = rule.dup_rule()
        r.set_v6(family == 6)
        try:
            r.normalize()
        except ufw.common.UFWError:
            return None
        if r.multi and r.protocol not in ("tcp", "udp"):
            return None  # backend set_rule: "Must specify 'tcp' or 'udp' with multiple ports"
        assert r.dapp == r.sapp == ""
        action = r.action + (f"_{r.logtype}" if r.logtype else "")
        text = f"{action} {r.protocol} {r.dport} {r.dst} {r.sport} {r.src} {r.direction}"
        found.append((family, text + (f" comment={r.comment}" if r.comment else "")))
    return found


def ours(spec: RuleSpec) -> list[tuple[int, str]]:
    """The tuples our planner expects for ``spec`` (IPv6 on: both families)."""
    return [(r.family, r.tuple_text()) for r in expand(want(spec), ipv6=True)]


def stored_comment(tuples: list[tuple[int, str]]) -> str:
    """The comment as ufw 0.36's strict decoder reads it back from the tuple."""
    hexed = tuples[0][1].split(" comment=", 1)[1]
    return bytes.fromhex(hexed).decode("utf-8")


def rule_args(source: str = "any", dport: str = "22",
              comment: str = "froxlor-fleet:ssh") -> list[str]:
    return ["allow", "proto", "tcp", "from", source, "to", "any", "port", dport,
            "comment", comment]


def refusal(check, value: Any) -> str | None:
    try:
        check(value)
    except ValueError as e:
        return str(e)
    return None


# Values ufw takes but that would not mean what they say; each refusal names why.
DELIBERATE = {
    "IPv4-mapped": "::ffff:a.b.c.d: ufw stores it, netfilter never matches it (v4 path)",
    "leading zero": "/08: ufw stores the mask string verbatim",
    "contiguous": "255.0.255.0, 0.0.0.255: ufw keeps a non-contiguous mask verbatim",
    "whitespace": "10.0.0.0/8\\n: ufw's $-anchored checks let the newline into user.rules",
    "printable": "controls, bidi, separators...: ufw prints comments raw in status output",
    "at most 120": "comments over 120 characters: our limit, ufw has none",
    "anywhere": "'any': ufw's keyword; anywhere is an empty source list in our data",
    "whole number": "port names (ssh): /etc/services differs between hosts",
}


def assert_conforms(reason: str | None, ufw_says: list | None, value: Any) -> None:
    if ufw_says is None:
        assert reason is not None, f"ufw refuses {value!r}, we accept it"
    elif reason is not None:
        assert any(word in reason for word in DELIBERATE), \
            f"ufw accepts {value!r}, we refuse it without a deliberate reason: {reason}"


# --- sources ------------------------------------------------------------------------------

SOURCE_EDGES = [
    "10.0.0.1", "10.0.0.0/8", "10.9.8.7/8", "10.0.0.0/255.0.0.0", "10.0.0.0/255.0.255.0",
    "10.0.0.0/0.0.0.255", "10.0.0.0/255.000.0.0", "10.0.0.0/08", "10.0.0.0/00", "1.2.3.4/32",
    "1.2.3.4/032", "1.2.3.4/255.255.255.255", "0.0.0.0/0", "10.0.0.0/0", "10.0.0.0/33",
    "255.255.255.255/255.255.255.255", "1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1",
    "10.0.0.0/8\n", "10.0.0.1\n", " 10.0.0.1", "10.0.0.1 ", "10.0.0.0/8/8", "10.0.0.0/",
    "/8", "", "any", "ANY", "localhost",
    "2001:db8::1", "2001:DB8::1", "2001:db8::1/32", "2001:db8::/32", "2001:db8::/032",
    "2001:db8::1/128", "2001:db8::1/0128", "2001:db8::/129", "::", "::/0", "::1", "::1/128",
    "::ffff:1.2.3.4", "::FFFF:1.2.3.4", "::ffff:0:0/96", "::ffff:102:304", "::1.2.3.4",
    "::0.0.0.1", "1::1.2.3.4", "::ffff:0:1.2.3.4", "64:ff9b::1.2.3.4", "fe80::1%eth0",
    "fe80::1%25", "fe80::1%eth0/64", "2001:db8::1\n", "2001:db8::/32\n", "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "::g", "1:0:0:2:0:0:3:4", "0:0:1::",
    "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:0db8:0000:0000:0000:0000:0000:0001/127",
    "2001:0db8:0000:0000:0000:0000:255.255.255.255", "0000:0000:0000:0000:0000:ffff:1.2.3.4",
    "1.2.3.4::", ":::", "::1.2.3", "::1.02.3.4", "2001:db8::1/64\t",
]


def check_source(value: str) -> None:
    reason = refusal(validation.address, value)
    ufw_says = ufw_tuples(rule_args(source=value))
    assert_conforms(reason, ufw_says, value)
    if reason is None:
        spec = RuleSpec(("22",), "tcp", validation.address(value), "ssh")
        assert ufw_tuples(want(spec).ufw_args()) == ufw_says == ours(spec), value


@pytest.mark.parametrize("value", SOURCE_EDGES)
def test_sources_conform_to_ufw(value: str) -> None:
    need(ufw, "ufw")
    check_source(value)


def _with_mask(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    width = ip.max_prefixlen
    masks = st.integers(0, width + 2).map(str) | st.integers(0, width).map(lambda n: f"0{n}")
    if ip.version == 4:
        masks |= st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
        masks |= st.integers(0, 32).map(
            lambda n: str(ipaddress.IPv4Network(f"0.0.0.0/{n}").netmask))
    return st.one_of(st.just(""), masks.map(lambda m: "/" + m))


def _spellings(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    forms = [str(ip), ip.exploded]
    if ip.version == 6:
        forms += [str(ip).upper(), f"::ffff:{ipaddress.IPv4Address(ip.packed[12:])}",
                  f"::{ipaddress.IPv4Address(ip.packed[12:])}"]
    return st.sampled_from(forms)


ADDRESS_LIKE = st.one_of(
    st.ip_addresses().flatmap(lambda ip: st.tuples(_spellings(ip), _with_mask(ip)))
    .map("".join),
    st.text(alphabet="0123456789abcdefABCDEF:./%\n ", max_size=46),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=ADDRESS_LIKE)
def test_random_sources_conform_to_ufw(value: str) -> None:
    need(ufw, "ufw")
    check_source(value)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="ufw runs on glibc; compare our inet_ntop with glibc's")
@settings(max_examples=1000, deadline=None)
@given(packed=st.binary(min_size=16, max_size=16) | st.lists(
    st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x102]), min_size=8, max_size=8).map(
    lambda words: b"".join(w.to_bytes(2, "big") for w in words)))
def test_ipv6_text_is_glibc_inet_ntop(packed: bytes) -> None:
    assert validation.ipv6_text(ipaddress.IPv6Address(packed)) == \
        socket.inet_ntop(socket.AF_INET6, packed)


# --- comments -----------------------------------------------------------------------------

COMMENT_EDGES = [
    "", "panel", "it's", "'", '"double"', "back\\slash", "$(reboot)", "`id`", "a;b|c&d",
    "ümlaut 🔥 中文", "x" * 120, "x" * 121, "  padded  ", "in", "out", "log", "log-all",
    "comment", "allow", "proto tcp", "-f", "--dry-run", "#", "a\nb", "a\rb", "tab\t",
    "nul\x00", "del\x7f", "\x85", "nbsp\u00a0", "\u2028", "\u2029", "\u202e", "\u200b",
    "\u2066isolate\u2069", "\ufeff", "\ud800", "\udfff", "\ue000", "\U000f0000", "\u0378",
    "\ufffd", "combining e\u0301", "emoji 👩‍👩‍👧", "%s %(x)s {x}", "=", "comment=41",
]


def check_comment(note: str) -> None:
    reason = refusal(validation.comment_text, note)
    full = RuleSpec(("8080",), "tcp", None, "extra", note.strip()).comment
    ufw_says = ufw_tuples(rule_args(dport="8080", comment=full))
    if ufw_says is not None:
        try:
            if stored_comment(ufw_says) != full:
                ufw_says = None  # stored, but not as written: mangled counts as refused
        except UnicodeDecodeError:
            ufw_says = None
    assert_conforms(reason, ufw_says, note)
    if reason is None:
        spec = RuleSpec(("8080",), "tcp", None, "extra", validation.comment_text(note))
        assert ufw_tuples(want(spec).ufw_args()) == ufw_says == ours(spec), note
        assert ufw.util.hex_decode(ufw_says[0][1].split(" comment=")[1]) == spec.comment


@pytest.mark.parametrize("note", COMMENT_EDGES)
def test_comments_conform_to_ufw(note: str) -> None:
    need(ufw, "ufw")
    check_comment(note)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(note=st.text(st.characters(codec=None), max_size=130)
       | st.text(st.characters(min_codepoint=0x2000, max_codepoint=0x206F), max_size=5)
       | st.text(st.characters(categories=["Cs", "Co", "Cn", "Zs", "Cf"]), max_size=3))
def test_random_comments_conform_to_ufw(note: str) -> None:
    need(ufw, "ufw")
    check_comment(note)


def test_whole_comment_checks_match_ufw_on_bare_words() -> None:
    """ufw's parser looks for "in", "out", "log", "log-all" in argv before it takes the
    comment out, so a comment that is exactly one of them is refused; ours never is
    (the marker comes first), and ``ufw_comment`` refuses them anyway."""
    need(ufw, "ufw")
    for word in ("in", "out", "log", "log-all", "'", "fine"):
        ufw_says = ufw_tuples(rule_args(comment=word))
        assert (refusal(validation.ufw_comment, word) is None) == (ufw_says is not None), word


# --- ports --------------------------------------------------------------------------------

PORT_ITEM = st.one_of(st.integers(-2, 65537).map(str),
                      st.tuples(st.integers(0, 65537), st.integers(0, 65537)).map(
                          lambda t: f"{t[0]}:{t[1]}"),
                      st.sampled_from(["ssh", "http", "080", "1:65535", "0:1", "a:b", ""]))


def our_ports(items: list[str]) -> tuple[str, ...]:
    ports = ufw_port_sort(validation.port_item(p) for p in items)
    if port_weight(ports) > validation.MAX_PORT_WEIGHT:
        raise ValueError("at most 15 ports")
    return ports


def ufw_port_tuples(dport: str) -> list[tuple[int, str]] | None:
    """``ufw_tuples`` for a raw port list. ufw's own test (parser.py, UFWCommandRule.parse:
    ``re.match('^\\d([0-9,:]*\\d+)*$', port)``) backtracks exponentially when a long list
    does not match; its outcome there is known ("Port ranges must be numeric" when the
    list has ',' or ':'), so don't wait for it. Our own lists always match at once."""
    if not re.fullmatch(r"[0-9](?:[0-9,:]*[0-9])?", dport) and ("," in dport or ":" in dport):
        return None
    return ufw_tuples(rule_args(dport=dport))


@settings(max_examples=400, deadline=None)
@given(items=st.lists(PORT_ITEM, min_size=1, max_size=17, unique=True))
def test_port_lists_conform_to_ufw(items: list[str]) -> None:
    need(ufw, "ufw")
    reason = refusal(our_ports, items)
    ufw_says = ufw_port_tuples(",".join(items))
    if reason is not None and "at most 15" in reason and ufw_says is None:
        return
    assert_conforms(reason, ufw_says, items)
    if reason is None:
        spec = RuleSpec(our_ports(items), "tcp", None, "ssh")
        assert ufw_tuples(want(spec).ufw_args()) == ours(spec)
        if all(re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", p) for p in items):
            assert ufw_says == ours(spec)  # written as ufw writes them: the same tuple


def test_fifteen_ports_is_ufws_limit_too() -> None:
    need(ufw, "ufw")
    for items, ok in ((list(map(str, range(1000, 1015))), True),
                      (list(map(str, range(1000, 1016))), False),
                      (["1:2", *map(str, range(1000, 1013))], True),
                      (["1:2", *map(str, range(1000, 1014))], False)):
        assert (refusal(our_ports, items) is None) is ok
        assert (ufw_port_tuples(",".join(items)) is not None) is ok


# --- whole plans --------------------------------------------------------------------------

def test_every_rule_of_a_catalog_plan_is_stored_as_planned() -> None:
    need(ufw, "ufw")
    layers = [("group all_roles", {
        "froxlor_roles": ["web", "ftp", "dns", "imap", "pop3", "smtp", "mysql"],
        "mysql_allowed_sources": ["10.9.8.7/8", "2001:DB8::1/32", "::1.2.3.4"],
        "ssh_allowed_sources": ["192.0.2.7/32", "2001:db8::7/128"], "ssh_port": 2222,
        "firewall_extra_rules": [{"port": ["9100:9200", 10050, "8080"], "proto": "udp",
                                  "comment": 'ümlaut "x" $(id) 🔥'}]})]
    plan, errors = validation.resolve("h1", layers)
    assert not errors and plan
    for spec in plan.rules:
        assert ufw_tuples(want(spec).ufw_args()) == ours(spec), spec


# --- ProFTPd ------------------------------------------------------------------------------

MAIN_CONF = """\
ServerName "conformance"
ServerType standalone
DefaultServer on
Port 0
User nobody
Group nogroup
Include {fragment}
"""


def proftpd_check(tmp_path: Path, fragment: str) -> tuple[bool, str]:
    """``proftpd -t`` on a minimal config that includes ``fragment`` the way
    /etc/proftpd/conf.d/ is included. ProFTPd 1.3.8 exits 0 on a fatal error in an
    included file, so a "fatal:" line counts as failure (as the deploy's step does)."""
    frag = tmp_path / "fragment.conf"
    frag.write_text(fragment)
    main = tmp_path / "proftpd.conf"
    main.write_text(MAIN_CONF.format(fragment=frag))
    res = subprocess.run([PROFTPD, "-t", "-c", str(main)], capture_output=True, text=True,
                         timeout=120)
    out = res.stdout + res.stderr
    return res.returncode == 0 and "fatal:" not in out, out


def directives(fragment: str) -> list[str]:
    return [line for line in fragment.splitlines() if line and not line.startswith("#")]


PASSIVE_EDGES = [(1024, 1025), (1023, 1025), (1024, 1024), (50000, 50000), (50001, 50000),
                 (65534, 65535), (65535, 65535), (65535, 65536), (1024, 65535), (0, 2000),
                 (49152, 65534)]


@pytest.mark.parametrize("low,high", PASSIVE_EDGES)
def test_passive_ranges_conform_to_proftpd(tmp_path: Path, low: int, high: int) -> None:
    need(PROFTPD, "proftpd")
    reason = refusal(validation._passive_range, (low, high))
    accepted, out = proftpd_check(tmp_path, f"PassivePorts {low} {high}\n")
    assert (reason is None) == accepted, out
    if accepted:
        fragment = render_fragment((low, high))
        assert proftpd_check(tmp_path, fragment)[0]
        assert directives(fragment) == [f"PassivePorts {low} {high}"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(low=st.integers(1000, 65600), high=st.integers(1000, 65600))
def test_random_passive_ranges_conform_to_proftpd(tmp_path: Path, low: int, high: int) -> None:
    need(PROFTPD, "proftpd")
    accepted, out = proftpd_check(tmp_path, f"PassivePorts {low} {high}\n")
    assert (refusal(validation._passive_range, (low, high)) is None) == accepted, out


# IPs need no resolver; the names are few, as each -t may ask DNS. A name no resolver
# knows passes -t whatever DNS answers: the interface lookup comes last and leaves
# ENOENT, on which ProFTPd defers resolution (src/netaddr.c get_addr_by_device; Bug#4104).
MASQUERADE_KEPT = ["203.0.113.10", "10.0.0.1", "2001:DB8::10", "::ffff:192.0.2.7", "::1",
                   "localhost", "ftp.example.net", "FTP.Example.NET."]
# Refused: ProFTPd reads each as something other than what is written.
MASQUERADE_MISREAD = {"010.0.0.1": "8.0.0.1", "1234": "0.0.4.210", "10.1": "10.0.0.1",
                      "0x7f.1": "127.0.0.1", "fe80::1%lo": "fe80::1"}


@pytest.mark.parametrize("value", MASQUERADE_KEPT)
def test_masquerade_addresses_pass_proftpd_as_written(tmp_path: Path, value: str) -> None:
    need(PROFTPD, "proftpd")
    stored = validation._masquerade(value)
    assert stored is not None
    fragment = render_fragment((50000, 50100), stored)
    ok, out = proftpd_check(tmp_path, fragment)
    assert ok, out
    assert directives(fragment) == ["PassivePorts 50000 50100", f"MasqueradeAddress {stored}"]
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if platform.libc_ver()[0] == "glibc":
            with pytest.raises(OSError):  # getaddrinfo will treat it as a name, not a number
                socket.inet_aton(stored)
    else:
        assert f"masquerading as {stored}\n" in out  # ProFTPd's inet_pton read it as written


@pytest.mark.parametrize("value,read_as", MASQUERADE_MISREAD.items())
def test_masquerade_values_proftpd_misreads_are_refused(tmp_path: Path, value: str,
                                                        read_as: str) -> None:
    need(PROFTPD, "proftpd")
    assert refusal(validation._masquerade, value) is not None
    ok, out = proftpd_check(tmp_path, f"PassivePorts 50000 50100\nMasqueradeAddress {value}\n")
    assert ok and f"masquerading as {read_as}\n" in out, out  # the reason we refuse it


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ip=st.ip_addresses().map(str) | st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"))
def test_random_masquerade_ips_pass_proftpd_as_written(tmp_path: Path, ip: str) -> None:
    need(PROFTPD, "proftpd")
    stored = validation._masquerade(ip)
    fragment = render_fragment((50000, 50100), stored)
    ok, out = proftpd_check(tmp_path, fragment)
    assert ok and f"masquerading as {stored}\n" in out, out
    assert directives(fragment) == ["PassivePorts 50000 50100", f"MasqueradeAddress {stored}"]


@settings(max_examples=300, deadline=None)
@given(name=st.from_regex(validation.HOSTNAME_RE, fullmatch=True)
       | st.from_regex(r"[0-9a-fxA-FX.]{1,20}", fullmatch=True))
def test_no_accepted_name_is_a_number_to_the_resolver(name: str) -> None:
    """glibc's getaddrinfo first tries inet_aton, which reads "010.0.0.1" as 8.0.0.1."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("inet_aton's forms are glibc's")
    if refusal(validation._masquerade, name) is None:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            with pytest.raises(OSError):
                socket.inet_aton(name.removesuffix("."))
