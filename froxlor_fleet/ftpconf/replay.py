"""ProFTPd 1.3.8's configuration parser, replayed over what the host's dump showed
(``dump.py``): proftpd.conf top to bottom, each ``Include`` expanded in place in
ProFTPd's own order, ``<Global>`` and ``<VirtualHost>`` scoping, first occurrence wins.
Pure Python, no pyinfra.

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
  first-wins ``find_config`` (``fixup_servers()``); see tests/test_ftpconf.py.
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

What the dump could not list (``dump.py``) is ``UNKNOWN`` here: the replay records
where ProFTPd reads it (``ProftpdConfig.unknown``) instead of guessing its contents.

Line continuations (``\\`` at the end) and ``%{env:...}`` values are not replayed; such
a value shows as unreadable and counts as a conflict rather than a guess.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass, field

# FNM_PERIOD globs and IgnoreTempFiles (parser.c is_tmp_file()): as the host program's
# check reads an Include
from ..remote.ftpapply import included

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
UNKNOWN = "?"


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
class ConfTree:
    """The raw dump: listed entries, directive lines, what was (not) looked at."""

    entries: dict[str, str] = field(default_factory=dict)  # path -> %y%Y
    lines: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    roots: list[tuple[str, int | None]] = field(default_factory=list)  # depth None: all
    missing: set[str] = field(default_factory=set)
    not_listed: set[str] = field(default_factory=set)
    children: dict[str, list[str]] = field(default_factory=dict)


def norm(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/"))



def index_children(tree: ConfTree) -> None:
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

    def __init__(self, tree: ConfTree, conf_path: str, ours: str | None = None):
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
        path = norm(target)
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
        return included(name, pattern, "IgnoreTempFiles" in self.opts)

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


def evaluate(tree: ConfTree, conf_path: str, ours: str | None = None) -> ProftpdConfig:
    """Replay ProFTPd's parser over ``tree`` starting at ``conf_path`` (``ours``: this
    deploy's fragment, whose lines are the wanted ones)."""
    return _Replay(tree, conf_path, ours).run()
