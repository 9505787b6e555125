"""The proposal as Python files pyinfra loads as data, and where each goes.

Layout (``--out DIR``):

- ``DIR/group_data/<group>.py`` for an inventory group whose members were all read in
  this run and all got exactly the same proposal: pyinfra loads it as it is with
  ``--group-data DIR/group_data`` (next to your own group_data/, which it merges over
  key by key), or copy it into your group_data/. Evidence and conflicts are per member.
- ``DIR/host_data/<host>.py`` for every other host. pyinfra has no per-host data folder:
  an inventory takes them with ``host_data`` below (``("web1", host_data("DIR/host_data",
  "web1"))``), or copy the keys into the host's entry.

A host gets its data from exactly one file: one group file (the largest group that
qualifies; others it is in may qualify too and carry the same values, which combine to
the same) or its host file. The group ``all`` and the group pyinfra names after the
inventory file are never used: a file there would apply to hosts added later, unread.

Every value is written with ``repr`` (a Python literal, whatever a host reported) and
every comment is one printable line: nothing read from a host can become code.
"""

from __future__ import annotations

import keyword
import re
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .propose import HostProposal

_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class OutputFile:
    """One file of the proposal: where it goes (relative to ``--out``), for whom."""

    path: str  # "group_data/web_servers.py", "host_data/web1.py"
    group: str | None  # None: one host's file
    members: tuple[HostProposal, ...]


def host_file_name(host: str) -> str:
    """A host name as a file name: unchanged when it is a plain name, else %-quoted (a
    connector's ``@ssh/web1``), never hidden or a path."""
    name = quote(host, safe="@._-+")
    return "%2E" + name[1:] if name.startswith(".") else name


def layout(proposals: list[HostProposal], groups: dict[str, list[str]],
           skip_groups: tuple[str, ...] = ("all",)) -> list[OutputFile]:
    """Group files where a group's members (all of them, in the whole inventory) were
    read and agree exactly, host files for the rest; in a stable order."""
    by_host = {p.host: p for p in proposals}
    eligible: list[tuple[str, list[str]]] = []
    for group, members in groups.items():
        if (group in skip_groups or not members or not _GROUP_NAME.fullmatch(group)
                or keyword.iskeyword(group) or not all(m in by_host for m in members)):
            continue
        first = by_host[members[0]].data
        if all(by_host[m].data == first for m in members[1:]):
            eligible.append((group, members))
    eligible.sort(key=lambda item: (-len(item[1]), item[0]))
    files: list[OutputFile] = []
    covered: set[str] = set()
    for group, members in eligible:
        if set(members) <= covered:
            continue
        files.append(OutputFile(f"group_data/{group}.py", group,
                                tuple(by_host[m] for m in members)))
        covered.update(members)
    files.sort(key=lambda f: f.path)
    files += [OutputFile(f"host_data/{host_file_name(p.host)}.py", None, (p,))
              for p in proposals if p.host not in covered]
    return files


def comment(text: str) -> str:
    """``text`` as one printable line (non-printable characters escaped)."""
    text = " ".join(text.split("\n"))
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text


def _value(key: str, value: Any) -> str:
    if key == "firewall_extra_rules" and value:
        return "[\n" + "".join(f"    {entry!r},\n" for entry in value) + "]"
    return repr(value)


def render(file: OutputFile) -> str:
    """The file's text: a header, the conflicts, then each key with its evidence."""
    members = file.members
    names = ", ".join(m.host for m in members)
    who = f"group {file.group} ({names})" if file.group else f"host {names}"
    lines = [f"# Proposed by `froxlor-fleet discover` for {comment(who)}: review before use.",
             "# Read from what the host runs, what UFW admits and froxlor's own settings (its "
             "database, read-only; they never decide a role).",
             "# Evidence for each key: froxlor says | the host runs | UFW admits.",
             "# Only keys of froxlor-fleet are written; keys not written keep their defaults.",
             ""]
    conflicts = [(m.host, c) for m in members for c in m.conflicts]
    lines.append("# Conflicts to review:" if conflicts else "# Conflicts to review: none")
    lines += [f"#   {_who(file, host)}{comment(text)}" for host, text in conflicts]
    lines.append("")
    data = members[0].data
    for key, value in data.items():
        for member in members:
            for evidence in member.evidence.get(key, []):
                lines.append(f"#   {_who(file, member.host)}{comment(evidence.columns())}")
        lines.append(f"{key} = {_value(key, value)}")
        lines.append("")
    notes = [(m.host, n) for m in members for n in m.notes]
    if notes:
        lines.append("# Notes:")
        lines += [f"#   {_who(file, host)}{comment(text)}" for host, text in notes]
    return "\n".join(lines).rstrip("\n") + "\n"


def _who(file: OutputFile, host: str) -> str:
    return f"{host}: " if file.group else ""


def host_data(folder: str | Path, host: str) -> dict[str, Any]:
    """The data in ``folder/<host>.py`` (as ``discover --out`` wrote it), for a host's
    entry in an inventory: ``web_servers = [("web1", host_data("proposal/host_data",
    "web1"))]``. Read as pyinfra reads a group data file (its names, without ``_``-names
    and modules); ``{}`` when there is no such file, so hosts without one just get none.
    A relative ``folder`` is taken from the current directory (where pyinfra runs)."""
    path = Path(folder) / f"{host_file_name(host)}.py"
    if not path.is_file():
        return {}
    names = runpy.run_path(str(path))
    return {key: value for key, value in names.items()
            if not key.startswith("_") and not hasattr(value, "__loader__")}
