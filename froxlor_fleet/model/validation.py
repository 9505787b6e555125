"""Fleet data validation and role resolution.

``resolve`` turns one host's inventory data into a ``HostPlan`` (the desired state,
see ``plan.py``) or a list of one-line errors naming host, group, key and value.
``check_inventory`` does that for every host and raises ``FleetDataError`` listing all
problems, so a run stops before it touches (or even connects to) any host.

A value is accepted only if ufw (0.36-0.36.2) and ProFTPd accept it *and* read it the
way we mean it: the control machine may have no ufw or ProFTPd, so their rules are
restated here, each with the source it comes from; ``tests/test_conformance.py`` holds
them against the real ufw parser and ``proftpd -t``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from ..remote.ufwmodel import port_span
from .catalog import (
    CONFIRM_TIMEOUT_RANGE,
    DEFAULTS,
    EXTRA_RULE_DEFAULTS,
    FTP_DAEMONS,
    LOG_LEVELS,
    NEAR_MISS_SHORT_KEY,
    POLICIES,
    PROTOCOLS,
    ROLE_ALIASES,
    ROLE_SERVICES,
    RULE_ACTIONS,
    UNION_KEYS,
    VALID_ROLES,
)
from .plan import MAX_PORT_WEIGHT, GroupSource, HostPlan, RuleSpec, port_weight, ufw_port_sort

__all__ = ["FleetDataError", "confirm_timeout", "grouped", "nearest", "plural", "address",
           "source", "sources", "group_of", "comment_text",
           "port_number", "port_item", "ipv6_text", "resolve", "check_inventory",
           "inventory_layers", "inventory_groups", "error_line", "slot_conflicts"]

MAX_COMMENT = 120  # ours, not ufw's (it has no limit): keeps `ufw status` readable
EXTRA_RULE_KEYS = {"port", *EXTRA_RULE_DEFAULTS}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# RFC 1123 host name, optional trailing dot. Use with fullmatch: ``$`` would let a
# trailing newline through, and with it a second line into the ProFTPd fragment.
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
# A last label glibc's inet_aton reads as a number (decimal, octal 010, hex 0x1f):
# getaddrinfo then takes "010.0.0.1" as 8.0.0.1, "1234" as 0.0.4.210 (RFC 3696 2:
# a top-level label is never all-numeric).
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes "²" and "٢"
_V4_CHARS = re.compile(r"[0-9./]+")
_V6_CHARS = re.compile(r"[0-9A-Fa-f:./]+")
BAD_ADDRESS = "is not a valid IP address or CIDR network"
GROUP_PREFIX = "@"  # a source "@web_servers": the addresses of that inventory group's hosts
SHOWN_GROUPS = 8  # an unknown group's line lists this many of the inventory's groups
BAD_MASQUERADE = "must be an IP address or a DNS name"


class FleetDataError(PyinfraError):
    """Bad group/host data; the message holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors  # one line per host and problem (the audit's per-host view)
        lines = grouped(errors)
        super().__init__(
            f"fleet data is invalid, no host was touched ({plural(len(lines), 'problem')}):\n  "
            + "\n  ".join(lines)
        )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


SHOWN_HOSTS = 3  # a grouped line names this many hosts, then counts the rest


def grouped(errors: list[str]) -> list[str]:
    """The same problem of many hosts (one bad value in a group file) as one line naming
    the hosts, in first-seen order: ``hosts web1, web2, web3 and 97 more (100 hosts)
    (group web_servers): froxlor_roles = 'wbe': ...``."""
    hosts: dict[str, list[str]] = {}
    for line in errors:
        name, _, rest = line.removeprefix("host ").partition(" ")
        if not line.startswith("host ") or not rest:
            hosts.setdefault(line, [])
            continue
        hosts.setdefault(rest, []).append(name)
    lines = []
    for rest, names in hosts.items():
        if len(names) <= 1:
            lines.append(f"host {names[0]} {rest}" if names else rest)
            continue
        shown = ", ".join(names[:SHOWN_HOSTS])
        more = len(names) - SHOWN_HOSTS
        who = (f"{shown} and {more} more ({len(names)} hosts)" if more > 0
               else shown)
        lines.append(f"hosts {who} {rest}")
    return lines


# --- reading data ---------------------------------------------------------------------

Layer = tuple[str, Mapping[str, Any]]  # (where it came from, data)


# An inventory's groups: name -> its hosts' names, in inventory order.
Groups = Mapping[str, tuple[str, ...]]


def inventory_groups(inventory: Any) -> dict[str, tuple[str, ...]]:
    """Every group pyinfra knows in ``inventory``, with its hosts: the inventory file's
    groups, the one named after the file, and groups that only have group data (empty)."""
    members = {name: tuple(h.name for h in hosts) for name, hosts in inventory.groups.items()}
    return {name: members.get(name, ()) for name in dict.fromkeys(
        [*inventory.groups, *inventory.group_data])}


def inventory_layers(inventory: Any, host: Any) -> list[Layer]:
    """A host's data sources, highest precedence first (pyinfra's own order)."""
    layers: list[Layer] = [("--data", inventory.get_override_data() or {}),
                           ("host data", inventory.get_host_data(host.name) or {})]
    for group in reversed(list(host.groups)):
        layers.append((f"group {group}", inventory.get_group_data(group) or {}))
    layers.append(("group all", inventory.get_data() or {}))
    return layers


def _scalar(layers: list[Layer], key: str) -> tuple[Any, str]:
    assert key not in UNION_KEYS, key
    for where, data in layers:
        if key in data:
            return data[key], where
    return DEFAULTS[key], "default"


def _collected(layers: list[Layer], key: str) -> list[tuple[Any, str]]:
    """Every layer's value for a list key (they are combined, not replaced)."""
    assert key in UNION_KEYS, key
    return [(data[key], where) for where, data in layers if key in data]


# --- ports ------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def port_number(value: Any) -> int:
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if not _is_int(value) or not 1 <= value <= 65535:
        raise ValueError("a port must be a whole number from 1 to 65535")
    return int(value)


def port_item(value: Any) -> str:
    """A port (80, "80") or range ("49152:65534") in ufw's notation. ufw's own rule
    (src/common.py, UFWRule.set_port): 1-65535, and a range's low < high."""
    if isinstance(value, str) and ":" in value:
        low, _, high = value.partition(":")
        lo, hi = port_number(low), port_number(high)
        if lo >= hi:
            raise ValueError("a port range must be low:high with low < high")
        return f"{lo}:{hi}"
    return str(port_number(value))


# --- addresses, as ufw stores them ----------------------------------------------------

def ipv6_text(ip: ipaddress.IPv6Address) -> str:
    """``ip`` as glibc's ``inet_ntop`` writes it, which is what ufw stores (it normalises
    with ``socket.inet_ntop``, src/util.py normalize_address). Python's ``str`` differs
    for embedded IPv4: glibc writes ``::ffff:1.2.3.4`` and ``::1.2.3.4``. Done here
    rather than with ``socket.inet_ntop`` so the control machine's libc doesn't matter."""
    words = [int.from_bytes(ip.packed[i:i + 2], "big") for i in range(0, 16, 2)]
    base, length = _longest_zero_run(words)
    parts: list[str] = []
    for i, word in enumerate(words):
        if base <= i < base + length:
            if i == base:
                parts.append(":")
            continue
        if i:
            parts.append(":")
        if i == 6 and base == 0 and (length == 6 or (length == 5 and words[5] == 0xFFFF)):
            parts.append(str(ipaddress.IPv4Address(ip.packed[12:])))
            break
        parts.append(f"{word:x}")
    if length and base + length == 8:
        parts.append(":")
    return "".join(parts)


def _longest_zero_run(words: list[int]) -> tuple[int, int]:
    """(start, length) of the first longest run of 0 words, (-1, 0) if shorter than 2."""
    best = (-1, 0)
    start = -1
    for i, word in enumerate(words + [1]):  # the sentinel closes a trailing run
        if word == 0 and start < 0:
            start = i
        elif word != 0 and start >= 0:
            if i - start > best[1]:
                best = (start, i - start)
            start = -1
    return best if best[1] >= 2 else (-1, 0)


def _prefix_length(mask: str, version: int) -> int:
    """A "/N" or (IPv4) dotted netmask as a prefix length, refusing the forms ufw would
    store verbatim and so differently from what iptables reads."""
    width = 32 if version == 4 else 128
    if _DIGITS.fullmatch(mask):
        if len(mask) > 1 and mask[0] == "0":
            # ufw only drops a host mask spelt exactly "32"/"128" and keeps "/08" as is
            raise ValueError("has a prefix length with a leading zero, which ufw stores "
                             "verbatim: write it without")
        if int(mask) > width:
            raise ValueError(BAD_ADDRESS)
        return int(mask)
    if version == 4 and "." in mask:
        # ufw turns a contiguous netmask into /N and keeps any other verbatim
        # (src/util.py, _dotted_netmask_to_cidr); a hostmask would be misread.
        try:
            bits = int(ipaddress.IPv4Address(mask))
        except ValueError:
            bits = -1
        ones = bin(bits).count("1") if bits >= 0 else 0
        if bits < 0 or bits != (0xFFFFFFFF << (32 - ones)) & 0xFFFFFFFF:
            raise ValueError("has a netmask that is not a contiguous dotted netmask such "
                             "as 255.255.0.0: write /N instead")
        return ones
    raise ValueError(BAD_ADDRESS)


def address(value: Any) -> str:
    """An IPv4/IPv6 address or network, exactly as ufw writes it into its rule files.

    ufw's rules (src/util.py valid_address4/6, normalize_address; src/common.py
    UFWRule.set_src): v4 is ``[0-9./]``, at most 31 characters, v6 ``[0-9a-f:./]``, at
    most 43; a "/32" or "/128" is dropped; v4 host bits are zeroed, v6 host bits kept.
    """
    if not isinstance(value, str):
        raise ValueError("must be an IP address or CIDR network as a string")
    if "%" in value:
        raise ValueError("has an IPv6 scope id (%...), which ufw refuses")
    if value.lower() == "any":
        raise ValueError("is ufw's word for anywhere: leave the sources empty for that")
    if any(c.isspace() for c in value):
        # ufw's $-anchored checks let "10.0.0.0/8\n" by, and write the newline into
        # user.rules, splitting the rule's tuple line
        raise ValueError(f"{BAD_ADDRESS}: it holds whitespace or a line break")
    version = 6 if ":" in value else 4
    if not (_V6_CHARS if version == 6 else _V4_CHARS).fullmatch(value):
        raise ValueError(BAD_ADDRESS)
    if version == 6 and len(value) > 43:
        raise ValueError("is longer than 43 characters, which ufw refuses for IPv6: "
                         "write it compressed (2001:db8::1)")
    text, slash, mask = value.partition("/")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(BAD_ADDRESS) from None
    prefix = _prefix_length(mask, version) if slash else ip.max_prefixlen
    if prefix == 0:
        # ufw stores a /0 source in the slot of a rule without one, but for this family
        # only: the plan (no source: both families) and ufw would never agree.
        raise ValueError(f"is anywhere (IPv{version} only), which ufw stores as a rule "
                         "without a source: leave the sources empty for anywhere")
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            # ufw would store it (as ::ffff:a.b.c.d), but netfilter sees such a client
            # as IPv4, so the v6 rule never matches: the operator meant the v4 address.
            v4 = f"{ip.ipv4_mapped}" + (f"/{prefix - 96}" if 96 <= prefix < 128 else "")
            raise ValueError("is an IPv4-mapped IPv6 address, which no ufw rule ever "
                             f"matches (netfilter sees these clients as IPv4): write {v4}")
        shown = ipv6_text(ip)
    else:
        shown = str(ipaddress.IPv4Network((ip, prefix), strict=False).network_address)
    return shown if prefix == ip.max_prefixlen else f"{shown}/{prefix}"


def group_of(source: str | None) -> str | None:
    """The inventory group a (checked) source names: ``"@web_servers"`` -> ``web_servers``."""
    return source[len(GROUP_PREFIX):] if source and source.startswith(GROUP_PREFIX) else None


def source(value: Any, groups: Groups | None = None) -> str:
    """One source: an address or network exactly as ufw stores it (``address``), or
    ``"@group"``, naming a group of ``groups`` (the inventory's) that has hosts: it stands
    for their addresses (``groups.resolve_groups``). Group names are pyinfra's: the names
    of the inventory file's variables, Python identifiers."""
    if not (isinstance(value, str) and value.startswith(GROUP_PREFIX)):
        return address(value)
    name = value[len(GROUP_PREFIX):]
    if not name.isidentifier():
        raise ValueError("names an inventory group, but a group's name is a Python identifier "
                         "(as pyinfra's are: @web_servers)")
    known = groups or {}
    if name in known and not known[name]:
        raise ValueError(f"inventory group {name!r} has no hosts")
    if name not in known:
        used = tuple(sorted(g for g, hosts in known.items() if hosts and g.isidentifier()))
        meant = nearest(name, used) if used else None
        if meant:
            raise ValueError(f"unknown inventory group {name!r}, did you mean '{meant}'?")
        listed = ", ".join(used[:SHOWN_GROUPS]) + (", ..." if len(used) > SHOWN_GROUPS else "")
        raise ValueError(f"unknown inventory group {name!r}"
                         + (f" (groups: {listed})" if used else " (the inventory has no groups)"))
    return value


def sources(value: Any, groups: Groups | None = None) -> tuple[str, ...]:
    """A list of sources (``source``), each once, in order."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of IP addresses or CIDR networks (or @groups)")
    return tuple(dict.fromkeys(source(v, groups) for v in value))


# --- comments ---------------------------------------------------------------------------

def comment_text(value: Any) -> str:
    """An operator's note for an extra rule (stored as "froxlor-fleet:extra <note>").

    ufw refuses a comment containing "'" (src/parser.py, UFWCommandRule.parse) and
    silently drops lone surrogates (src/util.py hex_encode, errors="ignore"). It prints
    comments raw in ``ufw status`` / ``show added``, so we also refuse every character
    that is not printable (str.isprintable: controls, bidi and other format characters,
    line/paragraph separators, spaces other than " ", private use, unassigned).
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("comment must be a string")
    if "'" in value:
        raise ValueError("ufw refuses comments containing \"'\"")
    if len(value) > MAX_COMMENT or not value.isprintable():
        raise ValueError(f"comment must be one line of at most {MAX_COMMENT} printable "
                         "characters (no control, format or separator characters)")
    return value.strip()


def ufw_comment(comment: str) -> str:
    """The whole comment a rule carries, checked against what ufw's rule parser refuses:
    "'" anywhere, and (src/parser.py, checked before the comment is taken out of argv)
    a comment that is exactly one of the words "in", "out", "log", "log-all"."""
    if "'" in comment or comment in ("in", "out", "log", "log-all"):
        raise ValueError(f"ufw refuses the comment {comment!r}")
    return comment


# --- resolution ----------------------------------------------------------------------

def _shown(value: Any) -> str:
    """``repr(value)`` on one line, whatever ``value`` is."""
    try:
        text = repr(value)
    except Exception:  # a group_data module may hold anything
        text = f"<{type(value).__name__} object>"
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 300 else text[:297] + "..."


class _Errors:
    def __init__(self, host: str):
        self.host = host
        self.lines: list[str] = []

    def add(self, key: str, value: Any, reason: str, where: str = "") -> None:
        self.lines.append(error_line(self.host, key, value, reason, where))

    def add_key(self, key: str, reason: str, where: str = "") -> None:
        """A line without the value: for keys that may not be ours (secrets)."""
        self.lines.append(_line(self.host, key, reason, where))


def _line(host: str, key: str, reason: str, where: str = "") -> str:
    origin = f" ({where})" if where and where not in ("default", "host data") else ""
    return f"host {host}{origin}: {key}: {reason}"


def error_line(host: str, key: str, value: Any, reason: str, where: str = "") -> str:
    """One problem of a key of ours, as every data error reads: ``host db1 (group
    db_servers): mysql_allowed_sources = '@web_servers': why``."""
    return _line(host, f"{key} = {_shown(value)}", reason, where)


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: inserts, deletes, substitutions and swaps of
    two neighbouring characters, each one edit."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb)))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


@functools.cache
def _pyinfra_keys() -> frozenset[str]:
    """pyinfra's own connector data keys (ssh_user, ssh_key...): never a near miss."""
    from pyinfra.api.connectors import get_all_connectors

    return frozenset(key for connector in get_all_connectors().values()
                     for key in (getattr(connector, "data_meta", None) or {}))


def near_miss(key: str) -> str | None:
    """The key of ours that ``key`` is probably a typo of, or ``None`` if it is not ours
    at all (``catalog.NEAR_MISS_SHORT_KEY``). Our own keys are not near misses."""
    if key in DEFAULTS or key.startswith("_") or key in _pyinfra_keys():
        return None
    return nearest(key, tuple(DEFAULTS))


@functools.cache  # every host repeats its groups' keys: the pre-connect check of a 30-host
# fleet spent ~0.15 s of the control side's CPU in _edits
def nearest(word: str, options: tuple[str, ...]) -> str | None:
    """The option ``word`` is probably a typo of (case ignored): at most two edits away,
    one for options shorter than ``catalog.NEAR_MISS_SHORT_KEY``; else None."""
    folded = word.lower()
    best = min(options, key=lambda option: _edits(folded, option))
    allowed = 1 if len(best) < NEAR_MISS_SHORT_KEY else 2
    return best if _edits(folded, best) <= allowed else None


def _unknown_keys(layers: list[Layer], err: _Errors) -> None:
    """A misspelt key of ours would silently mean "not set" (``ssh_allowd_sources``: SSH
    open to the world): name the key it probably should be. Any other key belongs to
    someone else (another deploy, pyinfra): ignored, and its value never shown."""
    for where, data in layers:
        for key in data:
            meant = near_miss(key) if isinstance(key, str) else None
            if meant:
                err.add_key(key, f"unknown key, did you mean '{meant}'? (not a key of this "
                            "deploy, and too close to one to be another's)", where)


def _roles(layers: list[Layer], err: _Errors) -> list[str]:
    roles: set[str] = {"ssh"}  # always present: the deploy itself needs it
    for value, where in _collected(layers, "froxlor_roles"):
        if not isinstance(value, (list, tuple, set, frozenset)):
            err.add("froxlor_roles", value, "must be a list of role names", where)
            continue
        for role in value:
            if not isinstance(role, str):
                err.add("froxlor_roles", role, "a role must be a name (a string)", where)
            elif role in ROLE_ALIASES:
                roles.update(ROLE_ALIASES[role])
            elif role in ROLE_SERVICES:
                roles.add(role)
            else:
                meant = nearest(role, VALID_ROLES)
                err.add("froxlor_roles", role, f"unknown role, did you mean '{meant}'?" if meant
                        else f"unknown role (valid: {', '.join(VALID_ROLES)})", where)
    return sorted(roles)


Check = Callable[[Any], Any]


def _checked(layers: list[Layer], key: str, check: Check, err: _Errors) -> tuple[Any, bool]:
    """``(value, True)``, or ``(the catalog default, False)`` after reporting why not."""
    value, where = _scalar(layers, key)
    try:
        return check(value), True
    except ValueError as e:
        err.add(key, value, str(e), where)
        return check(DEFAULTS[key]), False


def _get(layers: list[Layer], key: str, check: Check, err: _Errors) -> Any:
    return _checked(layers, key, check, err)[0]


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value
    return check


def confirm_timeout(value: Any) -> int:
    """0 (off) or ``catalog.CONFIRM_TIMEOUT_RANGE`` seconds (the data check, and the
    command that arms a host)."""
    low, high = CONFIRM_TIMEOUT_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not (
            value == 0 or low <= value <= high):
        raise ValueError(f"must be 0 (off) or whole seconds from {low} to {high}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be True or False")
    return value


def _passive_range(value: Any) -> tuple[int, int]:
    """ProFTPd's own rule (modules/mod_core.c, set_passiveports): both ports 1024-65535
    and min < max ("min port must be less than max port": a single port is refused)."""
    if isinstance(value, str):  # pyinfra's --data passes strings: "50000:50100"
        low_text, colon, high_text = value.partition(":")
        if colon and _DIGITS.fullmatch(low_text) and _DIGITS.fullmatch(high_text):
            value = (int(low_text), int(high_text))
    if not isinstance(value, (list, tuple)) or len(value) != 2 \
            or not all(_is_int(v) for v in value):
        raise ValueError("must be a (low, high) pair or a 'low:high' string of port numbers")
    low, high = value
    if not 1024 <= low <= 65535 or not 1024 <= high <= 65535:
        raise ValueError("passive ports must lie within 1024-65535")
    if low > high:
        raise ValueError("range is inverted (low > high)")
    if low == high:
        raise ValueError("ProFTPd needs low < high (a single port is refused)")
    return (low, high)


def _masquerade(value: Any) -> str | None:
    """What ``MasqueradeAddress`` reads as written (modules/mod_core.c,
    set_masqueradeaddress -> src/netaddr.c pr_netaddr_get_addr2: inet_pton v6, then v4,
    then getaddrinfo, then an interface name). ProFTPd itself takes any word; we take
    an IP address or an RFC 1123 DNS name that getaddrinfo can't read as a number."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(BAD_MASQUERADE)
    if "%" in value:
        # ProFTPd drops the scope, and anything after "%" would land in the fragment
        raise ValueError(f"{BAD_MASQUERADE} without an IPv6 scope id (%...)")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return ipv6_text(ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    name = value.removesuffix(".")
    if not HOSTNAME_RE.fullmatch(value) or len(name) > 253:
        raise ValueError(BAD_MASQUERADE)
    if _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
        raise ValueError(f"{BAD_MASQUERADE}; a DNS name may not end in a numeric label "
                         "(the resolver reads 010.0.0.1 as 8.0.0.1, 1234 as 0.0.4.210)")
    return value


def _extra_rule(item: Any) -> RuleSpec:
    """One ``firewall_extra_rules`` entry, one ``RuleSpec`` per source (``source`` left
    ``None``: the caller fills in each source)."""
    entry = {**EXTRA_RULE_DEFAULTS, **item}
    raw = entry["port"]
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    if not items:
        raise ValueError("port list is empty")
    ports = ufw_port_sort(port_item(p) for p in items)
    if port_weight(ports) > MAX_PORT_WEIGHT:
        raise ValueError(f"ufw takes at most {MAX_PORT_WEIGHT} ports per rule (a range counts 2)")
    proto = entry["proto"]
    if not isinstance(proto, str) or proto not in PROTOCOLS:
        raise ValueError(f"proto must be one of {', '.join(PROTOCOLS)}")
    action = entry["action"]
    if not isinstance(action, str) or action not in RULE_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(RULE_ACTIONS)}")
    spec = RuleSpec(ports, proto, None, "extra", comment_text(entry["comment"]), action)
    ufw_comment(spec.comment)
    return spec


# An extra rule as validation sees it: the spec, the entry it came from and where.
Extra = tuple[RuleSpec, Mapping[str, Any], str]


def _extra_rules(layers: list[Layer], err: _Errors, groups: Groups | None = None) -> list[Extra]:
    key = "firewall_extra_rules"
    rules: list[Extra] = []
    for value, where in _collected(layers, key):
        if not isinstance(value, (list, tuple)):
            err.add(key, value, "must be a list of rules", where)
            continue
        for item in value:
            if not isinstance(item, Mapping) or "port" not in item:
                err.add(key, item, "each rule must be a dict with at least 'port'", where)
                continue
            unknown = set(item) - EXTRA_RULE_KEYS
            if unknown:
                err.add(key, item, f"unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                        f"(valid: {', '.join(sorted(EXTRA_RULE_KEYS))})", where)
                continue
            try:
                spec = _extra_rule(item)
                srcs = sources(item.get("sources"), groups)
            except ValueError as e:
                err.add(key, dict(item), str(e), where)
                continue
            for src in srcs or (None,):
                rules.append((replace(spec, source=src), item, where))
    return rules


def _role_rules(roles: list[str], ssh_port: int, srcs: dict[str, tuple[str, ...]],
                passive: tuple[int, int] | None, flags: Mapping[str, bool]) -> list[RuleSpec]:
    rules: list[RuleSpec] = []
    for role in roles:
        for svc in ROLE_SERVICES[role]:
            if svc.when and not flags[svc.when]:
                continue
            action = "limit" if svc.limit_key and flags[svc.limit_key] else "allow"
            ports = tuple(p.format(ssh_port=ssh_port) for p in svc.ports)
            allowed = srcs.get(svc.sources_key, ()) if svc.sources_key else ()
            for src in allowed or (None,):
                rules.append(RuleSpec(ufw_port_sort(ports), svc.proto, src, role, action=action))
        if role == "ftp" and passive:
            rules.append(RuleSpec((f"{passive[0]}:{passive[1]}",), "tcp", None, "ftp"))
    return rules


# Boolean data keys that switch a role's service on (``when``) or make it ``limit``.
ROLE_FLAGS = tuple(sorted({k for svcs in ROLE_SERVICES.values() for svc in svcs
                           for k in (svc.when, svc.limit_key) if k}))
_VERB = {"allow": "allows", "deny": "denies", "reject": "rejects", "limit": "limits"}


def _slot(rule: RuleSpec) -> tuple[tuple[str, ...], str, str | None]:
    """What ufw keeps one rule for (``UfwRule.key`` for the rules we make)."""
    return rule.ports, rule.proto, rule.source


def slot_conflicts(role_rules: Sequence[RuleSpec],
                   extras: Sequence[RuleSpec]) -> list[tuple[int, str]]:
    """ufw keeps one rule per ports, protocol and source, and adding another action for
    that slot updates the rule in place (src/backend_iptables.py, set_rule): an extra
    rule that acts otherwise on exactly a role rule's slot, or another extra rule's,
    would overwrite it on every run (or never be added). ``(index in extras, why)`` for
    each such extra rule (the data check, and the deploy's once groups are resolved)."""
    roles: dict[tuple[tuple[str, ...], str, str | None], RuleSpec] = {}
    for rule in role_rules:
        roles.setdefault(_slot(rule), rule)
    seen: dict[tuple[tuple[str, ...], str, str | None], RuleSpec] = {}
    found: list[tuple[int, str]] = []
    for index, spec in enumerate(extras):
        slot = _slot(spec)
        slot_text = f"{spec.dport}/{spec.proto} from {spec.source or 'anywhere'}"
        role, other = roles.get(slot), seen.setdefault(slot, spec)
        if role is not None and role.action != spec.action:
            owner = f"the '{role.label}' role {_VERB[role.action]}"
            hint = ("set ssh_rate_limit = True to rate-limit SSH"
                    if role.label == "ssh" and spec.action == "limit" else
                    "set ssh_rate_limit = False to allow SSH without a limit"
                    if role.label == "ssh" and role.action == "limit" else
                    "name single ports or sources instead")
        elif other.action != spec.action:
            owner = f"another firewall_extra_rules entry {_VERB[other.action]}"
            hint = "keep one of the two"
        else:
            continue
        found.append((index, f"{spec.action} on exactly the rule {owner} ({slot_text}): ufw "
                      "keeps one rule per ports, protocol and source, so one would overwrite "
                      f"the other; {hint}"))
    return found


def _check_slots(role_rules: list[RuleSpec], extras: list[Extra], err: _Errors) -> None:
    """``slot_conflicts`` of the data as written, one line each."""
    for index, why in slot_conflicts(role_rules, [spec for spec, _, _ in extras]):
        _, item, where = extras[index]
        err.add("firewall_extra_rules", dict(item), why, where)


def _role_sources(roles: list[str], layers: list[Layer], err: _Errors,
                  groups: Groups | None) -> dict[str, tuple[str, ...]]:
    """The sources keys of the host's roles (``Service.sources_key``), each checked; a
    key no role of the host uses is not (``all.py`` may set it for every host).
    ``mysql_allowed_sources`` is required: 3306 is never opened to the world."""
    srcs: dict[str, tuple[str, ...]] = {}
    for key in sorted({svc.sources_key for role in roles for svc in ROLE_SERVICES[role]
                       if svc.sources_key}):
        value, where = _scalar(layers, key)
        if key == "mysql_allowed_sources" and (
                value is None or (isinstance(value, (list, tuple)) and not value)):
            err.add(key, value, "required when 'mysql' is a role (3306 is never opened to "
                    "the world)", where)
            srcs[key] = ()
            continue
        srcs[key] = _get(layers, key, functools.partial(sources, groups=groups), err)
    return srcs


def _group_sources(layers: list[Layer], srcs: dict[str, tuple[str, ...]],
                   extras: list[Extra]) -> tuple[GroupSource, ...]:
    """Where the data names inventory groups, in data order (the keys as ``srcs``)."""
    found = [GroupSource(key, group, _scalar(layers, key)[1])
             for key, values in srcs.items() for group in map(group_of, values) if group]
    found += [GroupSource("firewall_extra_rules", group, where)
              for spec, _, where in extras if (group := group_of(spec.source))]
    return tuple(dict.fromkeys(found))


def resolve(host: str, layers: list[Layer],
            groups: Groups | None = None) -> tuple[HostPlan | None, list[str]]:
    """Resolve one host's data to its plan; returns ``(plan, [])`` or ``(None, errors)``.
    ``groups``: the inventory's (``inventory_groups``), which sources may name; without
    them, a source naming a group is an unknown group."""
    err = _Errors(host)
    _unknown_keys(layers, err)
    roles = _roles(layers, err)
    ssh_port = _get(layers, "ssh_port", port_number, err)
    srcs = _role_sources(roles, layers, err, groups)
    passive, passive_ok = (_checked(layers, "ftp_passive_ports", _passive_range, err)
                           if "ftp" in roles else (None, False))
    flags = {key: _get(layers, key, _boolean, err) for key in ROLE_FLAGS}
    role_rules = _role_rules(roles, ssh_port, srcs, passive, flags)
    extras = _extra_rules(layers, err, groups)
    _check_slots(role_rules, extras, err)
    plan_rules = role_rules + [spec for spec, _, _ in extras]
    if passive_ok and passive:
        _check_passive_overlap(plan_rules, passive, err, _scalar(layers, "ftp_passive_ports")[1])
    plan = HostPlan(
        host=host,
        roles=tuple(roles),
        rules=_first_per_slot(plan_rules),
        incoming=_get(layers, "firewall_default_incoming", _choice(POLICIES), err),
        outgoing=_get(layers, "firewall_default_outgoing", _choice(POLICIES), err),
        logging=_get(layers, "firewall_logging", _choice(LOG_LEVELS), err),
        enabled=_get(layers, "firewall_enabled", _boolean, err),
        purge_unmanaged=_get(layers, "firewall_purge_unmanaged", _boolean, err),
        ssh_port=ssh_port,
        lockout_guard=_get(layers, "firewall_lockout_guard", _boolean, err),
        confirm_timeout=_get(layers, "firewall_confirm_timeout", confirm_timeout, err),
        ssh_rate_limit=flags["ssh_rate_limit"],
        web_http3=flags["web_http3"],
        passive_ports=passive,
        masquerade_address=_get(layers, "ftp_masquerade_address", _masquerade, err),
        ftp_daemon=_get(layers, "ftp_daemon", _choice(FTP_DAEMONS), err),
        source_groups=_group_sources(layers, srcs, extras),
        managed=bool(_collected(layers, "froxlor_roles")),
    )
    return (None, err.lines) if err.lines else (plan, [])


def _first_per_slot(rules: list[RuleSpec]) -> tuple[RuleSpec, ...]:
    # ufw keeps one rule per (ports, proto, source); two specs for the same slot
    # would rewrite each other's comment on every run, so the first one wins.
    slots: dict[tuple[tuple[str, ...], str, str | None], RuleSpec] = {}
    for rule in rules:
        slots.setdefault((rule.ports, rule.proto, rule.source), rule)
    return tuple(slots.values())


def _check_passive_overlap(rules: list[RuleSpec], passive: tuple[int, int], err: _Errors,
                           where: str) -> None:
    low, high = passive
    for rule in rules:
        if rule.label == "ftp" and rule.ports == (f"{low}:{high}",):
            continue
        if rule.action in ("deny", "reject"):
            continue  # opens nothing: blocking some network from the range is fine
        for port in rule.ports:
            a, b = port_span(port)
            if rule.proto == "tcp" and a <= high and b >= low:
                err.add("ftp_passive_ports", passive,
                        f"overlaps port {port}/tcp opened by '{rule.label}'", where)
                return


def check_inventory(inventory: Any) -> dict[str, HostPlan]:
    """Validate every host of ``inventory``; raise one ``FleetDataError`` for all problems."""
    plans: dict[str, HostPlan] = {}
    errors: list[str] = []
    groups = inventory_groups(inventory)
    for host in inventory:
        plan, problems = resolve(host.name, inventory_layers(inventory, host), groups)
        errors.extend(problems)
        if plan:
            plans[host.name] = plan
    if errors:
        raise FleetDataError(errors)
    return plans
