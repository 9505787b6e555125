"""Which FTP daemon a host runs, and the passive range and address it really uses.

The host side, ``remote/proftpd_dump.sh``, lists ProFTPd's configuration tree and greps
the few directives that decide ``PassivePorts`` and ``MasqueradeAddress`` (with file and
line). This module replays ProFTPd 1.3.8's parser over that dump: proftpd.conf top to
bottom, each ``Include`` expanded in place in ProFTPd's own order, ``<Global>`` and
``<VirtualHost>`` scoping, first occurrence wins. Pure Python, no pyinfra.

What the replay follows (proftpd/proftpd at v1.3.8):

- ``src/parser.c`` ``parse_config_path2()``: an ``Include`` of a directory reads every
  entry but ``.``/``..`` (dot-files and backups such as ``*~`` or ``*.frx.bak`` too; a
  subdirectory fails with EISDIR and is skipped, no recursion); a glob in the last
  component matches with ``FNM_PERIOD`` (no dot-files); both sorted by ``strcmp`` of the
  full path (``config_filename_cmp``), i.e. byte order, not the locale's. A glob in a
  directory component goes through ``parse_wildcard_config_path()`` (same matching and
  sort, per component). A non-glob path that is a symlink is read as a file, so a
  symlinked directory is skipped (EISDIR). A missing path is a warning, not an error.
- ``IncludeOptions`` (``modules/mod_core.c`` ``set_includeoptions()``): replaces the
  options for every later ``Include``; names case-sensitive. ``IgnoreTempFiles`` skips
  ``*~`` and ``*.sw?`` (``is_tmp_file()``, ``FNM_PERIOD``: ``.x~`` is still read);
  ``IgnoreWildcards`` makes a glob in a directory component an error; ``AllowSymlinks``
  allows a symlinked glob directory.
- ``src/configdb.c``: ``add_config_param()`` appends (``xaset_insert_end``);
  ``find_config(main_server->conf, CONF_PARAM, "PassivePorts", FALSE)`` (mod_core.c
  ``core_pasv()``/``core_epsv()``) returns the first one in the session's server.
- ``src/dirtree.c`` ``fixup_globals()``/``copy_global_to_all()``: after parsing,
  ``<Global>`` contents are appended to the END of every server's list (main server's
  ``<Global>`` blocks first, then those inside each ``<VirtualHost>``), so a server's own
  value beats any ``<Global>`` one, wherever the ``<Global>`` stands in the file. A
  ``<VirtualHost>`` does not inherit the main server's top-level directives: it has its
  own, else ``<Global>``'s, else none (kernel-chosen port). Confirmed with the real
  binary: ``proftpd -t`` logs "ADDR:PORT masquerading as X" per server from the same
  first-wins ``find_config`` (``fixup_servers()``); see tests/test_proftpd_config.py.
- Contexts (mod_core.c ``CHECK_CONF``): ``PassivePorts``/``MasqueradeAddress`` in
  server, ``<VirtualHost>``, ``<Global>``; ``TLSMasqueradeAddress`` (contrib/mod_tls.c)
  in server or ``<VirtualHost>`` only. Anywhere else ``proftpd -t`` fails.
- ``<IfModule>``/``<IfDefine>`` add no context; their contents are counted as active
  (this module does not know which modules are loaded) and named in messages.
- ``<IfUser>``/``<IfGroup>``/``<IfClass>``/``<IfAuthenticated>`` (contrib/mod_ifsession.c
  ``ifsess_dup_param()``): for a matching session they remove the server's value and
  insert theirs at the head, so they override everything for those sessions.
- Under FTPS (froxlor sets ``TLSRequired on``) a ``TLSMasqueradeAddress`` overrides
  ``MasqueradeAddress`` (mod_core.c ``core_pasv()``, Bug#3862).

Includes outside /etc/proftpd are followed by the host script too (each new target
listed as deep as its pattern reaches, nested ones as well). What it could not list
(behind a symlinked directory, a glob in the first path component) is "unknown": an
unknown file ProFTPd reads before the fragment is a conflict (cannot tell), not a guess.

Line continuations (``\\`` at the end) and ``%{env:...}`` values are not replayed; such
a value shows as unreadable and counts as a conflict rather than a guess.
"""

from __future__ import annotations

import fnmatch
import posixpath
import shlex
from dataclasses import dataclass, field, replace

from .remote import program

DAEMONS = ("proftpd", "pureftpd")
DAEMON_TITLES = {"proftpd": "ProFTPd", "pureftpd": "pure-ftpd"}
# Binaries the dump looks for; the Debian variants of pure-ftpd all count as pure-ftpd.
BINARY_DAEMON = {
    "proftpd": "proftpd", "pure-ftpd": "pureftpd", "pure-ftpd-mysql": "pureftpd",
    "pure-ftpd-postgresql": "pureftpd", "pure-ftpd-ldap": "pureftpd",
    "pure-ftpd-wrapper": "pureftpd",
}
SETTINGS = {"passiveports": "PassivePorts", "masqueradeaddress": "MasqueradeAddress",
            "tlsmasqueradeaddress": "TLSMasqueradeAddress"}
# Where each may stand (mod_core.c / mod_tls.c CHECK_CONF): anything else fails -t.
ALLOWED_IN_GLOBAL = {"PassivePorts", "MasqueradeAddress"}
CONDITIONAL = {"ifmodule", "ifdefine"}  # counted as active
PER_SESSION = {"ifuser", "ifgroup", "ifclass", "ifauthenticated"}  # mod_ifsession
NOT_ALLOWED = {"anonymous", "directory", "limit"}
CONTEXT_TITLES = {"ifmodule": "IfModule", "ifdefine": "IfDefine", "ifuser": "IfUser",
                  "ifgroup": "IfGroup", "ifclass": "IfClass", "ifauthenticated": "IfAuthenticated",
                  "anonymous": "Anonymous", "directory": "Directory", "limit": "Limit"}
INCLUDE_MAX_DEPTH = 64  # parser.c PR_PARSER_INCLUDE_MAX_DEPTH
TMPFILE_PATTERNS = ("*~", "*.sw?")  # parser.c tmpfile_patterns
UNKNOWN = "?"
DEFAULT_CONF = "/etc/proftpd/proftpd.conf"  # Debian's; the dump reports the one it read


def dump_script() -> str:
    """The host-side script's text (``sh -c SCRIPT NAME [ROOT [CONFDIR]]``)."""
    return program("proftpd_dump.sh")


def dump_command() -> str:
    """The dump as one shell command for the state fact: ``sh -c '<script>' froxlor-fleet``.

    Comment lines are dropped to keep the command short; it runs in its own ``sh`` so
    its ``cd``/``set -f`` do not leak into the rest of the fact command."""
    lines = [line for line in dump_script().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return f"sh -c {shlex.quote(chr(10).join(lines) + chr(10))} froxlor-fleet"


# --- what the control side knows ---------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One ``PassivePorts``/``MasqueradeAddress``/``TLSMasqueradeAddress`` line.

    ``Setting(directive="PassivePorts", value="49152 65534",
    file="/etc/proftpd/proftpd.conf", line=42, vhost=None, global_from=None,
    conditions=("<IfModule mod_tls.c>",), session=None, invalid=None, ours=False)``
    """

    directive: str
    value: str  # as written, quotes removed
    file: str
    line: int | None  # None: this deploy's fragment as it is about to be written
    vhost: int | None = None  # index into ProftpdConfig.vhosts; None: main server
    global_from: int | None = None  # inside <Global>: 0 in main server, i+1 in vhost i
    conditions: tuple[str, ...] = ()  # enclosing <IfModule ...>/<IfDefine ...>
    session: str | None = None  # enclosing <IfUser ...> etc.: matching sessions only
    invalid: str | None = None  # enclosing context where ProFTPd rejects it
    ours: bool = False

    @property
    def origin(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    @property
    def ports(self) -> tuple[int, int] | None:
        """``(low, high)`` for PassivePorts, ``None`` when not two numbers."""
        words = self.value.split()
        if len(words) == 2 and all(w.isdigit() for w in words):
            return int(words[0]), int(words[1])
        return None


@dataclass
class VirtualHost:
    """A ``<VirtualHost>`` and what ProFTPd uses for it (own value, else ``<Global>``'s)."""

    name: str  # its addresses as written, e.g. "192.0.2.5 ftp.example.net"
    origin: str  # file:line of the <VirtualHost ...> line
    passive_ports: Setting | None = None
    masquerade: Setting | None = None
    tls_masquerade: Setting | None = None


@dataclass
class ProftpdConfig:
    """The replayed ProFTPd configuration.

    ``ProftpdConfig(conf_path="/etc/proftpd/proftpd.conf", found=True,
    parse_order=["/etc/proftpd/proftpd.conf", "/etc/proftpd/modules.conf", ...],
    passive_ports=Setting(... value="49152 65534" ...), masquerade=None,
    tls_masquerade=None, vhosts=[], occurrences=[...every Setting, parse order...],
    unknown=[], problems=[])``
    """

    conf_path: str
    found: bool = False
    parse_order: list[str] = field(default_factory=list)
    passive_ports: Setting | None = None  # main server, effective
    masquerade: Setting | None = None
    tls_masquerade: Setting | None = None
    vhosts: list[VirtualHost] = field(default_factory=list)
    occurrences: list[Setting] = field(default_factory=list)
    # (number of occurrences read before it, description) of files ProFTPd reads
    # but the dump could not show: their values are unknown.
    unknown: list[tuple[int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # proftpd -t would complain


@dataclass
class PureFtpdConfig:
    """``/etc/pure-ftpd/conf/PassivePortRange`` and ``ForcePassiveIP`` (Debian wrapper).

    ``PureFtpdConfig(passive_port_range=(50000, 50100), passive_port_range_raw="50000 50100",
    force_passive_ip=None)``"""

    passive_port_range: tuple[int, int] | None = None
    passive_port_range_raw: str | None = None  # None: no such file
    force_passive_ip: str | None = None


@dataclass
class _Tree:
    """The raw dump: listed entries, directive lines, what was (not) looked at."""

    entries: dict[str, str] = field(default_factory=dict)  # path -> %y%Y
    lines: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    roots: list[tuple[str, int | None]] = field(default_factory=list)  # depth None: all
    missing: set[str] = field(default_factory=set)
    not_listed: set[str] = field(default_factory=set)
    children: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class FtpConfig:
    """Everything the dump says.

    ``FtpConfig(installed={"proftpd": "/usr/sbin/proftpd"}, running={"proftpd": 812},
    proftpd=ProftpdConfig(...), pureftpd=PureFtpdConfig(...))``"""

    installed: dict[str, str] = field(default_factory=dict)  # daemon -> binary
    running: dict[str, int] = field(default_factory=dict)  # daemon -> pid
    proftpd: ProftpdConfig = field(default_factory=lambda: ProftpdConfig(DEFAULT_CONF))
    pureftpd: PureFtpdConfig = field(default_factory=PureFtpdConfig)
    tree: _Tree = field(default_factory=_Tree, repr=False)


# --- reading the dump --------------------------------------------------------------


def _norm(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/"))


def _split_grep_line(line: str, listed: list[str]) -> tuple[str, int, str] | None:
    """``etc/x.conf:12:TEXT`` -> ``("/etc/x.conf", 12, "TEXT")``; the path is matched
    against the listed files, so a ':' in a file name or in TEXT cannot mislead it."""
    for path in listed:
        rel = path.lstrip("/") + ":"
        if line.startswith(rel):
            num, sep, text = line[len(rel):].partition(":")
            if sep and num.isdigit():
                return path, int(num), text
    return None


def _ports(value: str) -> tuple[int, int] | None:
    """pure-ftpd's ``LOW HIGH`` (the wrapper also takes ``LOW:HIGH``)."""
    words = value.replace(":", " ").split()
    if len(words) == 2 and all(w.isdigit() for w in words):
        return int(words[0]), int(words[1])
    return None


def parse_dump(lines: list[str]) -> FtpConfig:
    """Build an ``FtpConfig`` from the dump's output lines (other lines are ignored)."""
    cfg = FtpConfig()
    tree = cfg.tree
    grep_lines: list[str] = []
    conf_path = DEFAULT_CONF
    for raw in lines:
        line = raw.rstrip("\n")
        tag, _, rest = line.partition(" ")
        if tag == "@bin":
            name, _, path = rest.partition(" ")
            daemon = BINARY_DAEMON.get(name)
            if daemon:  # the script lists pure-ftpd's daemons before its wrapper
                cfg.installed.setdefault(daemon, path)
        elif tag == "@run":
            name, _, pid = rest.partition(" ")
            if name in DAEMONS and pid.isdigit():
                cfg.running[name] = int(pid)
        elif tag == "@pure":
            key, _, value = rest.partition(" ")
            if key == "PassivePortRange":
                cfg.pureftpd.passive_port_range_raw = value.strip()
                cfg.pureftpd.passive_port_range = _ports(value)
            elif key == "ForcePassiveIP":
                cfg.pureftpd.force_passive_ip = value.strip() or None
        elif tag == "@conf":
            conf_path = _norm(rest)
        elif tag == "@root":
            path, _, depth = rest.rpartition(" ")
            tree.roots.append((_norm(path), None if depth == "-" else int(depth)))
        elif tag == "@f":
            kind, _, path = rest.partition(" ")
            tree.entries[_norm(path)] = kind
        elif tag == "@missing":
            tree.missing.add(_norm(rest))
        elif tag == "@unknown":
            tree.not_listed.add(_norm(rest))
        elif line and not line.startswith(("@", ":::")):
            grep_lines.append(line)
    # Longest first: "a.conf" must not claim the lines of "a.conf.bak".
    listed = sorted(tree.entries, key=len, reverse=True)
    for line in grep_lines:
        hit = _split_grep_line(line, listed)
        if hit:
            tree.lines.setdefault(hit[0], []).append((hit[1], hit[2]))
    _index_children(tree)
    cfg.proftpd = evaluate(tree, conf_path)
    return cfg


def _index_children(tree: _Tree) -> None:
    tree.children = {}
    for path in tree.entries:
        if path != "/":
            tree.children.setdefault(posixpath.dirname(path), []).append(path)
    for lines in tree.lines.values():
        lines.sort()


# --- replaying ProFTPd's parser ----------------------------------------------------


def _strcmp_key(path: str) -> bytes:
    # config_filename_cmp() is strcmp(3): bytes, not the locale's collation.
    return path.encode("utf-8", "surrogateescape")


def _fnmatch_period(name: str, pattern: str) -> bool:
    """fnmatch(3) with FNM_PERIOD: a leading '.' must be matched by a literal '.'."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _words(text: str) -> list[str]:
    """A directive line split as ProFTPd does, well enough: whitespace, double quotes."""
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError:
        words = text.split()
    return words


def _tag(words: list[str]) -> tuple[str, str]:
    """``["<VirtualHost", "192.0.2.5>"]`` -> ``("virtualhost", "192.0.2.5")``."""
    name = words[0].lstrip("<").lstrip("/").rstrip(">").lower()
    args = " ".join(words[1:]).rstrip(">").strip()
    return name, args


class _Replay:
    """One pass of ProFTPd's parser over the dump (see the module docstring)."""

    def __init__(self, tree: _Tree, conf_path: str, ours: str | None = None):
        self.tree = tree
        self.ours = ours  # this deploy's fragment (its lines are the wanted ones)
        self.cfg = ProftpdConfig(conf_path=conf_path)
        self.opts: set[str] = set()  # IncludeOptions in force
        self.stack: list[tuple[str, str]] = []  # open (tag, args)
        self.vhost: int | None = None
        self.global_from: int | None = None
        self.chain: list[str] = []  # files being read, for loops

    # What the dump knows about one path.
    def kind(self, path: str) -> str | None:
        """%y%Y of ``path``; ``None`` if it does not exist; ``UNKNOWN`` if not looked at."""
        if path in self.tree.entries:
            return self.tree.entries[path]
        for missing in self.tree.missing:
            if path == missing or path.startswith(missing.rstrip("/") + "/"):
                return None
        for root, depth in self.tree.roots:
            if not path.startswith(root.rstrip("/") + "/"):
                continue
            rel = path[len(root.rstrip("/")) + 1:].split("/")
            if depth is not None and len(rel) > depth:
                continue
            # Absent only if every directory on the way was listed as a real one:
            # find does not descend into a symlink, so beneath one nothing was seen.
            parent = root
            for part in [None, *rel[:-1]]:
                parent = posixpath.join(parent, part) if part else parent
                k = self.tree.entries.get(parent)
                if k is None or (k != "dd" and not k.startswith("l")):
                    return None
                if k != "dd":
                    return UNKNOWN
            return None
        return UNKNOWN

    def run(self) -> ProftpdConfig:
        conf = self.cfg.conf_path
        kind = self.kind(conf)
        if kind in ("ff", "lf"):
            self.cfg.found = True
            self.read_file(conf)
        elif kind == UNKNOWN:
            self.unknown(conf, "ProFTPd's main configuration")
        if self.stack:
            self.cfg.problems.append(f"unclosed <{self.stack[-1][0]}> at the end of {conf}")
        self.settle()
        return self.cfg

    def unknown(self, path: str, why: str) -> None:
        self.cfg.unknown.append((len(self.cfg.occurrences), f"{path} ({why})"))

    def read_file(self, path: str) -> None:
        if path in self.chain:
            self.cfg.problems.append(f"{path} includes itself (via {' -> '.join(self.chain)})")
            return
        self.cfg.parse_order.append(path)
        self.chain.append(path)
        for lineno, text in self.tree.lines.get(path, []):
            self.directive(path, lineno, text)
        self.chain.pop()

    def directive(self, path: str, lineno: int, text: str) -> None:
        words = _words(text.strip())
        if not words:
            return
        head = words[0].lower()
        if head.startswith("</"):
            self.close(_tag(words)[0])
        elif head.startswith("<"):
            self.open(*_tag(words), f"{path}:{lineno}")
        elif head == "includeoptions":
            # Replaces the previous options; names are case-sensitive (strcmp).
            self.opts = {w for w in words[1:] if w in ("AllowSymlinks", "IgnoreTempFiles",
                                                       "IgnoreWildcards")}
        elif head == "include" and len(words) > 1:
            for target in self.resolve(words[1], f"{path}:{lineno}"):
                self.read_file(target)
        elif head in SETTINGS:
            self.record(SETTINGS[head], " ".join(words[1:]), path, lineno)

    def titled(self, tag: str, args: str) -> str:
        return f"<{CONTEXT_TITLES.get(tag, tag)} {args}>".replace(" >", ">")

    def open(self, tag: str, args: str, origin: str) -> None:
        self.stack.append((tag, args))
        if tag == "virtualhost":
            self.cfg.vhosts.append(VirtualHost(name=args, origin=origin))
            self.vhost = len(self.cfg.vhosts) - 1
        elif tag == "global":
            self.global_from = 0 if self.vhost is None else self.vhost + 1

    def close(self, tag: str) -> None:
        # A stray closing tag is ignored, as ProFTPd does for </IfModule>.
        if not self.stack or self.stack[-1][0] != tag:
            return
        self.stack.pop()
        if tag == "virtualhost":
            self.vhost = None
        elif tag == "global":
            self.global_from = None

    def record(self, directive: str, value: str, path: str, lineno: int) -> None:
        ours = path == self.ours
        conditions = tuple(self.titled(t, a) for t, a in self.stack if t in CONDITIONAL)
        session = next((self.titled(t, a) for t, a in self.stack if t in PER_SESSION), None)
        invalid = next((self.titled(t, a) for t, a in self.stack if t in NOT_ALLOWED), None)
        if invalid is None and self.global_from is not None and directive not in ALLOWED_IN_GLOBAL:
            invalid = "<Global>"
        self.cfg.occurrences.append(Setting(
            directive=directive, value=value, file=path, line=None if ours else lineno,
            vhost=self.vhost, global_from=self.global_from, conditions=conditions,
            session=session, invalid=invalid, ours=ours))

    # Include resolution: parser.c parse_config_path2() / parse_wildcard_config_path().
    def resolve(self, target: str, origin: str, depth: int = 0) -> list[str]:
        """The files ``Include target`` makes ProFTPd read, in its order."""
        if depth > INCLUDE_MAX_DEPTH:
            return []
        if not target.startswith("/"):
            self.cfg.problems.append(f"{origin}: Include {target} is not an absolute path")
            return []
        path = _norm(target)
        if _has_glob(target) and _has_glob(posixpath.dirname(path)):
            if "IgnoreWildcards" in self.opts:
                self.cfg.problems.append(f"{origin}: Include {target}: wildcard directory "
                                         "with IncludeOptions IgnoreWildcards")
                return []
            return self.resolve_wildcard_dir(path, origin, depth)
        if _has_glob(target):
            directory, pattern = posixpath.split(path)
        else:
            directory, pattern = path, None
        kind = self.kind(directory)
        if kind == UNKNOWN or directory in self.tree.not_listed:
            self.unknown(target, f"Include at {origin}")
            return []
        if kind is None:
            return []  # ProFTPd: "warning: unable to include", nothing read
        if pattern is None and kind != "dd":
            # A file, or a symlink read as a file (a symlinked directory: EISDIR, skipped).
            return [path] if kind in ("ff", "lf") else []
        if pattern is not None and kind.startswith("l") and "AllowSymlinks" not in self.opts:
            return []
        return self.read_dir(directory, pattern, target, origin)

    def read_dir(self, directory: str, pattern: str | None, target: str,
                 origin: str) -> list[str]:
        if self.kind(posixpath.join(directory, "x")) == UNKNOWN:
            self.unknown(target, f"Include at {origin}")
            return []
        names = [posixpath.basename(p) for p in self.tree.children.get(directory, [])]
        picked = sorted((posixpath.join(directory, n) for n in names
                         if self.included_name(n, pattern)), key=_strcmp_key)
        files = []
        for path in picked:
            kind = self.tree.entries[path]
            if kind in ("ff", "lf"):
                files.append(path)
            elif kind == "l?":
                self.unknown(path, f"Include at {origin}")
            # Directories, broken links, loops: EISDIR/ENOENT/ELOOP, a warning, skipped.
        return files

    def included_name(self, name: str, pattern: str | None) -> bool:
        if "IgnoreTempFiles" in self.opts and any(
                _fnmatch_period(name, p) for p in TMPFILE_PATTERNS):
            return False
        return pattern is None or _fnmatch_period(name, pattern)

    def resolve_wildcard_dir(self, path: str, origin: str, depth: int) -> list[str]:
        parts = path.strip("/").split("/")
        i = next(n for n, part in enumerate(parts) if _has_glob(part))
        parent = "/" + "/".join(parts[:i])
        pattern, suffix = parts[i], parts[i + 1:]
        kind = self.kind(parent)
        if kind == UNKNOWN or self.kind(posixpath.join(parent, "x")) == UNKNOWN:
            self.unknown(path, f"Include at {origin}")
            return []
        if kind is None or (kind.startswith("l") and "AllowSymlinks" not in self.opts):
            return []
        names = [posixpath.basename(p) for p in self.tree.children.get(parent, [])]
        matched = sorted((posixpath.join(parent, n, *suffix) for n in names
                          if self.included_name(n, pattern)), key=_strcmp_key)
        files: list[str] = []
        for sub in matched:
            files.extend(self.resolve(sub, origin, depth + 1))
        return files

    def settle(self) -> None:
        """Pick each server's value: own first, else the first <Global> one."""
        cfg = self.cfg
        cfg.passive_ports = _effective(cfg.occurrences, "PassivePorts", None)
        cfg.masquerade = _effective(cfg.occurrences, "MasqueradeAddress", None)
        cfg.tls_masquerade = _effective(cfg.occurrences, "TLSMasqueradeAddress", None)
        for i, vhost in enumerate(cfg.vhosts):
            vhost.passive_ports = _effective(cfg.occurrences, "PassivePorts", i)
            vhost.masquerade = _effective(cfg.occurrences, "MasqueradeAddress", i)
            vhost.tls_masquerade = _effective(cfg.occurrences, "TLSMasqueradeAddress", i)


def _effective(occurrences: list[Setting], directive: str, vhost: int | None) -> Setting | None:
    """What find_config() returns for ``vhost`` (None: main server) after fixup_globals()."""
    usable = [o for o in occurrences if o.directive == directive
              and o.session is None and o.invalid is None]
    own = [o for o in usable if o.global_from is None and o.vhost == vhost]
    if own:
        return own[0]
    # <Global> blocks are copied main server's first, then each vhost's, in file order.
    glob = sorted((o for o in usable if o.global_from is not None),
                  key=lambda o: o.global_from or 0)  # never None here; stable: keeps parse order within
    return glob[0] if glob else None


def evaluate(tree: _Tree, conf_path: str) -> ProftpdConfig:
    """Replay ProFTPd's parser over ``tree`` starting at ``conf_path``."""
    return _Replay(tree, conf_path).run()


def with_fragment(cfg: FtpConfig, fragment_path: str, wanted_range: tuple[int, int],
                  wanted_masquerade: str | None) -> ProftpdConfig:
    """The replay as it will be once this deploy's fragment is written as wanted."""
    tree = replace(cfg.tree, entries=dict(cfg.tree.entries), lines=dict(cfg.tree.lines))
    path = _norm(fragment_path)
    tree.entries[path] = "ff"
    parent = posixpath.dirname(path)
    while parent not in tree.entries and parent != "/":  # written with its directory
        tree.entries[parent] = "dd"
        parent = posixpath.dirname(parent)
    tree.lines[path] = [(0, f"PassivePorts {wanted_range[0]} {wanted_range[1]}")]
    if wanted_masquerade:
        tree.lines[path].append((0, f"MasqueradeAddress {wanted_masquerade}"))
    _index_children(tree)
    return _Replay(tree, cfg.proftpd.conf_path, ours=path).run()


# --- judging ----------------------------------------------------------------------


@dataclass
class FtpCheck:
    """``conflicts``: lines that must stop the host; ``notes``: worth showing, harmless."""

    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    effective: ProftpdConfig | None = None  # the replay with the wanted fragment


def _where(s: Setting) -> str:
    extra = ""
    if s.conditions:
        extra += f" (inside {', '.join(s.conditions)}, counted as active)"
    if s.global_from is not None:
        extra += " (inside <Global>)"
    return f"{s.origin}{extra}"


def _advice(s: Setting, conf_path: str, fragment_path: str) -> str:
    if s.file == conf_path:
        return ("remove it from proftpd.conf (this deploy does not edit froxlor's "
                "proftpd.conf; froxlor rewrites it and keeps it commented out)")
    if posixpath.dirname(s.file) == posixpath.dirname(fragment_path):
        return (f"remove it from {s.file} (ProFTPd reads {posixpath.dirname(s.file)}/ in byte "
                f"order and uses the first one; {posixpath.basename(s.file)} comes before "
                f"{posixpath.basename(fragment_path)})")
    return f"remove it from {s.file} (ProFTPd reads it before {fragment_path})"


def _same(directive: str, a: str, b: str) -> bool:
    if directive == "PassivePorts":
        pa = Setting(directive, a, "", None).ports
        return pa is not None and pa == Setting(directive, b, "", None).ports
    return a.strip().lower() == b.strip().lower()


def _main_winner(check: FtpCheck, eff: ProftpdConfig, directive: str, wanted: str,
                 fragment_path: str) -> None:
    """Judge the main server's effective ``directive`` against ``wanted``."""
    winner = {"PassivePorts": eff.passive_ports,
              "MasqueradeAddress": eff.masquerade}[directive]
    ours = [o for o in eff.occurrences if o.ours and o.directive == directive]
    where = next((c for o in ours for c in (o.invalid, o.session) if c), None)
    if where or (winner is None and ours):
        if not where:
            # ours apply nowhere in the main server (there, or in <Global>, one would win):
            # they sit in a <VirtualHost>
            vhost = ours[0].vhost
            assert vhost is not None
            where = f"<VirtualHost {eff.vhosts[vhost].name}>"
        check.conflicts.append(
            f"ProFTPd reads {fragment_path} inside {where} (an Include there), so its "
            f"{directive} does not apply to the main server; include it at the top level")
        return
    if winner is None:
        return
    if not winner.ours:
        if _same(directive, winner.value, wanted):
            check.notes.append(
                f"{_where(winner)} sets {directive} {winner.value} too; ProFTPd uses that one "
                f"(it comes before {fragment_path}), the same as this deploy's, so no "
                f"conflict, but if it is ever changed ProFTPd follows it, not this deploy")
        else:
            check.conflicts.append(
                f"{_where(winner)} sets {directive} {winner.value}, which ProFTPd uses instead "
                f"of this deploy's {wanted} ({fragment_path}); "
                f"{_advice(winner, eff.conf_path, fragment_path)}")
    elif ours:
        before = [u for n, u in eff.unknown if n <= eff.occurrences.index(ours[0])]
        for what in before:
            check.conflicts.append(
                f"ProFTPd reads {what} before {fragment_path}, but the host did not show it; "
                f"cannot tell whether it sets {directive}; make it readable or remove it")
    for other in eff.occurrences:
        applies_to_main = other.vhost is None or other.global_from is not None
        if (other.directive == directive and other is not winner and not other.ours
                and applies_to_main and other.session is None and other.invalid is None):
            check.notes.append(f"{_where(other)} sets {directive} {other.value}, ignored: "
                               f"ProFTPd uses the first one ({winner.origin})")


def _unreadable(check: FtpCheck, eff: ProftpdConfig) -> None:
    for o in eff.occurrences:
        if o.directive == "PassivePorts" and not o.ours and o.ports is None:
            check.conflicts.append(f"{_where(o)}: cannot read PassivePorts {o.value!r} "
                                   "(not two port numbers on one line); write it plainly")


def _invalid(check: FtpCheck, eff: ProftpdConfig) -> None:
    for o in eff.occurrences:
        if o.invalid and not o.ours:
            check.conflicts.append(f"{_where(o)} sets {o.directive} inside {o.invalid}, "
                                   "where ProFTPd does not allow it (proftpd -t fails); remove it")


def _per_session(check: FtpCheck, eff: ProftpdConfig, wanted: dict[str, str | None]) -> None:
    for o in eff.occurrences:
        if o.session is None or o.invalid or o.directive not in wanted:
            continue
        want = wanted[o.directive]
        if want is None:
            check.notes.append(f"{_where(o)} sets {o.directive} {o.value} for sessions "
                               f"matching {o.session}")
        elif _same(o.directive, o.value, want):
            check.notes.append(f"{_where(o)} sets {o.directive} {o.value} for sessions "
                               f"matching {o.session}, the same as this deploy's")
        else:
            check.conflicts.append(
                f"{_where(o)} sets {o.directive} {o.value} inside {o.session}: sessions "
                f"matching it use that instead of this deploy's {want}; remove it")


def _vhosts(check: FtpCheck, eff: ProftpdConfig, wanted_ports: str,
            wanted_masquerade: str | None) -> None:
    for vh in eff.vhosts:
        label = f"<VirtualHost {vh.name}> ({vh.origin})"
        pp = vh.passive_ports
        if pp is None:
            check.conflicts.append(
                f"{label} has no PassivePorts, so its passive transfers use any port, not this "
                f"deploy's {wanted_ports}: the fragment applies to the main server only; set "
                f"PassivePorts {wanted_ports} inside that <VirtualHost> (or in a <Global>)")
        elif not _same("PassivePorts", pp.value, wanted_ports):
            check.conflicts.append(
                f"{label} uses PassivePorts {pp.value} from {_where(pp)}, not this deploy's "
                f"{wanted_ports} (the fragment applies to the main server only); set it to "
                f"{wanted_ports}")
        if wanted_masquerade is None:
            continue
        # Under FTPS (froxlor: TLSRequired on) TLSMasqueradeAddress comes first.
        for s, name in ((vh.tls_masquerade, "TLSMasqueradeAddress"),
                        (vh.masquerade, "MasqueradeAddress")):
            if s is not None:
                if not _same(name, s.value, wanted_masquerade):
                    check.conflicts.append(
                        f"{label} uses {name} {s.value} from {_where(s)}, not this deploy's "
                        f"MasqueradeAddress {wanted_masquerade}; set it to {wanted_masquerade}")
                break
        else:
            check.conflicts.append(
                f"{label} has no MasqueradeAddress, so it announces its own address, not "
                f"this deploy's {wanted_masquerade}; set MasqueradeAddress inside it")


def check(cfg: FtpConfig, fragment_path: str, wanted_range: tuple[int, int],
          wanted_masquerade: str | None = None) -> FtpCheck:
    """Would ProFTPd use this deploy's fragment? Conflicts and notes, one line each.

    Replays the configuration with the fragment as it is about to be written (so it
    works before the first write, and an old fragment on the host does not count)."""
    result = FtpCheck()
    eff = with_fragment(cfg, fragment_path, wanted_range, wanted_masquerade)
    result.effective = eff
    frag = _norm(fragment_path)
    wanted_ports = f"{wanted_range[0]} {wanted_range[1]}"
    if not eff.found:
        result.conflicts.append(f"{eff.conf_path} not found: cannot tell what ProFTPd uses "
                                "(froxlor writes it when its FTP service is configured)")
        return result
    if frag not in eff.parse_order:
        result.conflicts.append(
            f"ProFTPd never reads {frag}: no Include in {eff.conf_path} reaches it (froxlor's "
            f"proftpd.conf ends with 'Include {posixpath.dirname(frag)}/'); restore that line")
    else:
        _main_winner(result, eff, "PassivePorts", wanted_ports, frag)
        if wanted_masquerade:
            _main_winner(result, eff, "MasqueradeAddress", wanted_masquerade, frag)
    if eff.masquerade and not eff.masquerade.ours and not wanted_masquerade:
        result.notes.append(f"ProFTPd announces MasqueradeAddress {eff.masquerade.value} "
                            f"({_where(eff.masquerade)}); this deploy sets none")
    tls = eff.tls_masquerade
    if tls is not None:
        if wanted_masquerade and not _same("MasqueradeAddress", tls.value, wanted_masquerade):
            result.conflicts.append(
                f"{_where(tls)} sets TLSMasqueradeAddress {tls.value}: FTPS sessions (froxlor "
                f"requires TLS) announce it instead of this deploy's MasqueradeAddress "
                f"{wanted_masquerade}; remove it or set it to {wanted_masquerade}")
        else:
            result.notes.append(f"FTPS sessions announce TLSMasqueradeAddress {tls.value} "
                                f"({_where(tls)})")
    _unreadable(result, eff)
    _invalid(result, eff)
    _per_session(result, eff, {"PassivePorts": wanted_ports,
                               "MasqueradeAddress": wanted_masquerade,
                               "TLSMasqueradeAddress": wanted_masquerade})
    _vhosts(result, eff, wanted_ports, wanted_masquerade)
    return result


def conflicts(cfg: FtpConfig, fragment_path: str, wanted_range: tuple[int, int],
              wanted_masquerade: str | None = None) -> list[str]:
    """One line per reason ProFTPd would not use ``wanted_range``/``wanted_masquerade``
    from ``fragment_path``; ``[]`` when it will. E.g.::

        ["/etc/proftpd/proftpd.conf:42 sets PassivePorts 49152 65534, which ProFTPd uses
          instead of this deploy's 50000 50100 (/etc/proftpd/conf.d/froxlor-fleet-passive-
          ports.conf); remove it from proftpd.conf (this deploy does not edit ...)"]
    """
    return check(cfg, fragment_path, wanted_range, wanted_masquerade).conflicts


# --- which daemon --------------------------------------------------------------------


def _daemon_state(cfg: FtpConfig, daemon: str) -> str:
    running = "running" if daemon in cfg.running else "not running"
    return f"{DAEMON_TITLES[daemon]} ({cfg.installed[daemon]}, {running})"


def choose_daemon(cfg: FtpConfig, wanted: str = "auto") -> tuple[str | None, str | None]:
    """``(daemon, None)`` with daemon ``"proftpd"``/``"pureftpd"``, or ``(None, error line)``.

    ``wanted``: the ``ftp_daemon`` data key: ``auto`` (the one installed), ``proftpd`` or
    ``pureftpd`` (insist). Installed means its binary is there: config directories stay
    behind after ``apt remove``, so they prove nothing."""
    if wanted not in ("auto", *DAEMONS):
        return None, f"ftp_daemon must be 'auto', 'proftpd' or 'pureftpd', not {wanted!r}"
    if wanted != "auto":
        if wanted in cfg.installed:
            return wanted, None
        package = "proftpd-basic" if wanted == "proftpd" else "pure-ftpd-mysql"
        return None, (f"ftp_daemon is {wanted!r}, but {DAEMON_TITLES[wanted]} is not installed "
                      f"on this host (froxlor uses {package}); install it first, this deploy "
                      "does not install an FTP server unasked")
    found = [d for d in DAEMONS if d in cfg.installed]
    if not found:
        return None, ("the ftp role needs an FTP server, but neither ProFTPd nor pure-ftpd is "
                      "installed on this host; install the one froxlor is configured for, "
                      "this deploy does not install an FTP server unasked")
    if len(found) > 1:
        return None, (f"both {_daemon_state(cfg, 'proftpd')} and {_daemon_state(cfg, 'pureftpd')} "
                      "are installed on this host; set ftp_daemon to 'proftpd' or 'pureftpd' "
                      "in its data to say which one the ftp role manages")
    return found[0], None
