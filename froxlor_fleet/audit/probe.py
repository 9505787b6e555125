"""``froxlor-fleet audit --probe``: what a customer sees, tried from the control node.

Everything else the audit knows is read from inside the host; a customer's passive
transfer can still stall on something that view misses (a daemon that runs another
range than its files say, another tenant's iptables rule, a provider's firewall). So,
per host the audit read, for one address of each family the host has (IPv4, IPv6):

- on an ``ftp`` host, an explicit-FTPS control connection (froxlor's ProFTPd says
  ``TLSRequired on``): greeting, ``AUTH TLS``, ``PBSZ 0``/``PROT P``, a login when
  credentials are given, then ``PASV`` and ``EPSV``: is the offered port inside the
  passive range UFW admits, and does a data connection to it open (with a login: a real
  ``LIST`` over it; without one only where the daemon allows passive mode before a
  login, and then a TCP connect only). ProFTPd answers 530 before a login: that is
  reported as exactly what was checked, never as a pass;
- a TCP connect to every single role port UFW admits from anywhere.

Every network step waits at most ``ProbeOptions.timeout``; one address's FTPS session
at most ``ProbeOptions.budget``; all steps of all hosts run in parallel. Nothing here
raises for anything a host or the network does: results and ``Finding``s. The password
is never part of any text this module makes (``_Scrub``).
"""

from __future__ import annotations

import errno
import ftplib
import ipaddress
import re
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from ..model.plan import HostPlan
from ..remote.ufwmodel import BLOCKING
from .compare import Finding, HostAudit
from .fact import AuditState

FAMILIES = (4, 6)
DATA_OK = ("connected", "transferred")
LIST_LIMIT = 1 << 20  # bytes of a LIST read at most: the connection works, enough
ANONYMOUS = ("anonymous", "ftp")
DEFAULT_WORKERS = 32


# --- where to reach a host ----------------------------------------------------------------

def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def pick_addresses(candidates: Iterable[str], families: Sequence[int]) -> tuple[str, ...]:
    """The first usable address of each of ``families`` among ``candidates`` (in the
    order they come: the one pyinfra connects to first), IPv4 before IPv6."""
    chosen: dict[int, str] = {}
    for candidate in candidates:
        ip = _ip(candidate)
        # a link-local address needs an interface of this machine; none is a customer's
        if ip is None or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            continue
        if ip.version in families:
            chosen.setdefault(ip.version, str(ip))
    return tuple(chosen[f] for f in FAMILIES if f in chosen)


def resolve(name: str) -> list[str]:
    """The addresses ``name`` has for this machine (DNS, /etc/hosts): customers reach
    a host by its name. An address stays itself; a connector's ``@name`` has none."""
    if _ip(name) is not None:
        return [name]
    if not name or name.startswith("@"):
        return []
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


# --- what to probe -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeOptions:
    """``--probe``'s settings. ``password`` is never shown (not even by ``repr``)."""

    user: str | None = None  # None: no login (what the daemon allows before one)
    password: str | None = field(default=None, repr=False)
    timeout: float = 3.0  # seconds, per network step
    ca_file: str | None = None  # verify the daemons' certificates against it; None: don't
    families: tuple[int, ...] = FAMILIES
    parallel: int | None = None  # steps at once (None: DEFAULT_WORKERS)

    @property
    def budget(self) -> float:
        """One address's whole FTPS session: about as many steps as a session has."""
        return 6 * self.timeout


@dataclass(frozen=True)
class ProbeTarget:
    """One host as the probe sees it: where to reach it, and what UFW admits there."""

    host: str
    connect: str  # the name or address pyinfra connects to
    known: tuple[str, ...]  # addresses the host told: sshd's, then its global ones
    ftp_port: int | None  # the FTP daemon's port (None: no ftp role: no FTPS probe)
    passive: tuple[tuple[int, int], ...] | None  # UFW's passive range(s); None: UFW doesn't filter
    passive_text: str | None  # the same as the audit writes it ("49152:65534")
    ports: tuple[tuple[int, bool, str], ...]  # (port, something listens, role), tcp


def _ftp_port(plan: HostPlan) -> int | None:
    if "ftp" not in plan.roles:
        return None
    singles = [int(p) for spec in plan.rules if spec.label == "ftp" and spec.proto == "tcp"
               for p in spec.ports if p.isdigit()]
    return singles[0] if singles else 21


def _ranges(text: str | None) -> tuple[tuple[int, int], ...]:
    spans = []
    for item in (text or "").split(","):
        low, _, high = item.partition(":")
        if low.isdigit() and high.isdigit():
            spans.append((int(low), int(high)))
    return tuple(spans)


def target_for(plan: HostPlan, seen: AuditState, audit: HostAudit, connect: str) -> ProbeTarget:
    """The probe's view of a host the audit read: ``connect`` is the name or address
    pyinfra connects to (``ssh_hostname`` or the host's name)."""
    ftp_port = _ftp_port(plan)
    filters = audit.ufw is not None and audit.ufw.running
    text = audit.passive.ufw if audit.passive else None
    # the host's own addresses customers reach, from its state read (facts.UNREACHABLE)
    known = tuple(dict.fromkeys(a for a in (seen.state.ssh_server, *seen.state.reachable) if a))
    ports: dict[int, tuple[int, bool, str]] = {}
    for spec in plan.rules:
        if spec.action in BLOCKING or spec.proto not in ("tcp", "any"):
            continue  # a deny admits nothing; UDP has no connect to try
        for item in spec.ports:
            if not item.isdigit() or int(item) == ftp_port:
                continue  # a range is used on demand; 21 is the FTPS probe's
            state = audit.port(int(item), "tcp")
            if state is not None and state.admitted == "open":  # from anywhere: from here too
                ports.setdefault(state.port, (state.port, state.listening, spec.label))
    return ProbeTarget(plan.host, connect, known, ftp_port, _ranges(text) if filters else None,
                       text, tuple(ports[p] for p in sorted(ports)))


# --- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PassiveCheck:
    """One passive-mode request: the daemon's reply, the port it offered, whether UFW
    admits that port, and what became of the data connection: ``transferred`` (a LIST
    over it), ``connected`` (TCP only), ``refused``, ``timeout``, ``unreachable``,
    ``failed`` (opened, but the transfer failed) or ``not_checked``."""

    command: str  # PASV | EPSV
    reply: str
    port: int | None = None
    inside: bool | None = None
    data: str = "not_checked"
    detail: str = ""


@dataclass(frozen=True)
class FtpResult:
    """One address's FTPS session. ``reach``: the TCP connect to the control port;
    ``error``: the step that failed (None: every step tried went through);
    ``checked``: one line saying exactly what was checked."""

    port: int
    reach: str
    tls: bool = False
    login: str | None = None
    error: str | None = None
    checked: str = ""
    passive: tuple[PassiveCheck, ...] = ()
    stopped_at: str | None = None  # the failed step: connect | tls | login | passive


@dataclass(frozen=True)
class PortResult:
    port: int
    proto: str
    reach: str  # connected | refused | timeout | unreachable | error
    detail: str
    listening: bool
    role: str


@dataclass(frozen=True)
class AddressResult:
    address: str
    family: int
    ftp: FtpResult | None
    ports: tuple[PortResult, ...]


@dataclass(frozen=True)
class HostProbe:
    """A host's probe: what it compared with (UFW's passive range), every address."""

    ufw_filters: bool
    passive: str | None
    addresses: tuple[AddressResult, ...]
    note: str | None = None  # why nothing was probed


# --- the network steps --------------------------------------------------------------------------

def _seconds(value: float) -> str:
    return f"{value:g} s"


def _reach(error: BaseException, timeout: float) -> tuple[str, str]:
    """A failed connect as (reach, words)."""
    if isinstance(error, TimeoutError):
        return "timeout", f"timed out after {_seconds(timeout)}"
    if isinstance(error, ConnectionRefusedError):
        return "refused", "Connection refused"
    if isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH,
                                                       errno.EADDRNOTAVAIL):
        return "unreachable", error.strerror or str(error)
    if isinstance(error, OSError) and error.strerror:
        return "error", error.strerror
    return "error", f"{type(error).__name__}: {error}"


def probe_port(address: str, port: int, timeout: float) -> tuple[str, str]:
    """A TCP connect from here: (reach, words)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "connected", ""
    except Exception as error:  # every way a connect fails is a result
        return _reach(error, timeout)


class _Scrub:
    """Takes the password out of any text a daemon (or an error) might echo it in."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret

    def __call__(self, text: str) -> str:
        text = " ".join(str(text).split())
        return text.replace(self._secret, "***") if self._secret else text


class _OutOfTime(TimeoutError):
    pass


class _Clock:
    """Each step waits at most ``step`` seconds, and all of them ``budget``."""

    def __init__(self, step: float, budget: float) -> None:
        self.step, self.budget = step, budget
        self.end = time.monotonic() + budget

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise _OutOfTime(f"the probe took longer than {_seconds(self.budget)}")
        return min(self.step, left)

    def words(self, error: BaseException) -> str:
        if isinstance(error, _OutOfTime):
            return str(error)
        return f"timed out after {_seconds(self.step)}"


def _context(options: ProbeOptions) -> ssl.SSLContext:
    if options.ca_file:
        return ssl.create_default_context(cafile=options.ca_file)
    # froxlor's and the lab's certificates are often self-signed: not verified unless a
    # CA file is given (--probe-ca-file); the data still travels encrypted.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Failed(Exception):
    """A step failed: ``words`` say how (already scrubbed)."""

    def __init__(self, words: str) -> None:
        super().__init__(words)
        self.words = words


class _FtpsSession:
    """One explicit-FTPS session to ``address``: the steps in order, each bounded."""

    def __init__(self, address: str, port: int, tls_name: str, target: ProbeTarget,
                 options: ProbeOptions) -> None:
        self.address, self.port, self.tls_name = address, port, tls_name
        self.passive, self.passive_text, self.options = target.passive, target.passive_text, options
        self.family = 6 if ":" in address else 4
        self.clock = _Clock(options.timeout, options.budget)
        self.scrub = _Scrub(options.password)
        self.ftp = ftplib.FTP(encoding="utf-8")
        self.context: ssl.SSLContext | None = None
        self.reach = "not_tried"  # the TCP connect to the control port
        self.protected = False
        self.login: str | None = None
        self.checks: list[PassiveCheck] = []
        self.broken = False  # a transfer failed half way: the replies may be out of step

    # -- the control connection --

    def _timed(self) -> None:
        if self.ftp.sock is not None:
            self.ftp.sock.settimeout(self.clock.left())

    def _send(self, command: str) -> str:
        """A command and its reply; raises ``ftplib.Error`` for a 4xx/5xx reply."""
        self._timed()
        return self.ftp.sendcmd(command)

    def _reply(self) -> str:
        self._timed()
        return self.ftp.getresp()

    def connect(self) -> None:
        try:
            sock = socket.create_connection((self.address, self.port), timeout=self.clock.left())
        except Exception as error:
            self.reach, words = _reach(error, self.options.timeout)
            raise _Failed("could not connect: " + words) from None
        self.reach = "connected"
        self.ftp.sock, self.ftp.af = sock, sock.family
        self.ftp.host, self.ftp.port = self.address, self.port
        self.ftp.file = sock.makefile("r", encoding=self.ftp.encoding)
        try:
            self.ftp.welcome = self._reply()
        except TimeoutError as error:
            raise _Failed("no greeting: " + self.clock.words(error)) from None
        except ftplib.Error as error:
            raise _Failed("greeting refused: " + self.scrub(str(error))) from None
        except (OSError, EOFError) as error:
            raise _Failed("no greeting: " + self._words(error)) from None

    def start_tls(self) -> None:
        try:
            self._send("AUTH TLS")
        except ftplib.Error as error:
            raise _Failed("AUTH TLS refused: " + self.scrub(str(error))) from None
        try:
            self.context = _context(self.options)
            self._timed()
            plain = self.ftp.sock
            if plain is None:
                raise _Failed("TLS handshake failed: the connection is gone")
            self.ftp.sock = self.context.wrap_socket(plain, server_hostname=self.tls_name)
        except (ssl.SSLError, OSError, ValueError) as error:
            raise _Failed("TLS handshake failed: " + self._words(error)) from None
        self.ftp.file = self.ftp.sock.makefile("r", encoding=self.ftp.encoding)

    def protect(self) -> None:
        """PBSZ 0 / PROT P, so data connections are TLS too (froxlor: TLSRequired on);
        ProFTPd takes them before a login."""
        try:
            self._send("PBSZ 0")
            self._send("PROT P")
            self.protected = True
        except ftplib.Error:
            self.protected = False  # tried again after the login

    def log_in(self) -> None:
        user = self.options.user
        if not user:
            return
        secret = self.options.password
        if secret is None:
            secret = "anonymous@" if user in ANONYMOUS else ""
        try:
            reply = self._send(f"USER {user}")
            if reply.startswith("3"):
                reply = self._send(f"PASS {secret}")
            if not reply.startswith("2"):
                raise ftplib.error_reply(reply)
        except ftplib.Error as error:
            raise _Failed(f"login as {user} refused: {self.scrub(str(error))}") from None
        self.login = user
        if not self.protected:
            self.protect()

    # -- passive mode --

    def passive_modes(self) -> None:
        for command in ("PASV", "EPSV"):
            if self.broken:  # a reply still owed would be read as this one's
                break
            self.checks.append(self.passive_mode(command))

    def passive_mode(self, command: str) -> PassiveCheck:
        try:
            reply = self.scrub(self._send(command))
        except ftplib.Error as error:
            return PassiveCheck(command, self.scrub(str(error)))
        port = _offered_port(command, reply)
        if port is None:
            return PassiveCheck(command, reply, detail="no port in the reply")
        inside = self.passive is None or any(low <= port <= high for low, high in self.passive)
        data, detail = self._data(port)
        return PassiveCheck(command, reply, port, inside, data, detail)

    def _data(self, port: int) -> tuple[str, str]:
        """Open the data connection to ``port`` (the control connection's address, as
        clients do: a PASV reply's own address may be a NAT's) and, logged in, LIST."""
        try:
            conn = socket.create_connection((self.address, port), timeout=self.clock.left())
        except Exception as error:
            reach, words = _reach(error, self.options.timeout)
            return reach, words if not isinstance(error, _OutOfTime) else str(error)
        try:
            if self.login is None:
                return "connected", "TCP connect only: no login"
            return self._listing(conn)
        finally:
            conn.close()

    def _listing(self, conn: socket.socket) -> tuple[str, str]:
        try:
            reply = self._send("LIST")
            if reply.startswith("2"):  # some daemons say 2xx first (ftplib's ntransfercmd)
                reply = self._reply()
            if not reply.startswith("1"):
                return "failed", f"LIST: {self.scrub(reply)}"
        except ftplib.Error as error:
            return "failed", f"LIST refused: {self.scrub(str(error))}"
        except (OSError, EOFError) as error:
            self.broken = True
            return "failed", f"LIST: {self._words(error)}"
        try:
            size = self._read(conn)
            final = self._reply()
        except ftplib.Error as error:
            return "failed", f"LIST failed: {self.scrub(str(error))}"
        except (OSError, EOFError, ssl.SSLError) as error:
            self.broken = True
            return "failed", f"LIST over the data connection: {self._words(error)}"
        return "transferred", f"LIST {size} bytes ({final[:3]})"

    def _read(self, conn: socket.socket) -> int:
        if self.protected and self.context is not None:
            session = getattr(self.ftp.sock, "session", None)  # daemons may want it reused
            conn.settimeout(self.clock.left())
            conn = self.context.wrap_socket(conn, server_hostname=self.tls_name, session=session)
        size = 0
        while size < LIST_LIMIT:
            conn.settimeout(self.clock.left())
            try:
                chunk = conn.recv(65536)
            except ssl.SSLEOFError:  # closed without TLS's goodbye: the reply tells
                break
            if not chunk:
                break
            size += len(chunk)
        if isinstance(conn, ssl.SSLSocket):
            try:
                conn.unwrap()
            except (OSError, ValueError):
                pass
        return size

    def quit(self) -> None:
        try:
            if self.ftp.sock is not None:
                self.ftp.sock.settimeout(min(self.options.timeout, 1.0))
                self.ftp.sendcmd("QUIT")
        except Exception:  # leaving anyway: a daemon that does not answer QUIT changes nothing
            pass
        try:
            self.ftp.close()
        except OSError:
            pass

    def _words(self, error: BaseException) -> str:
        if isinstance(error, TimeoutError):
            return self.clock.words(error)
        if isinstance(error, EOFError):
            return "the daemon closed the connection"
        if isinstance(error, ssl.SSLError):  # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate ..."
            return self.scrub(re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(error)))
        if isinstance(error, OSError) and error.strerror:
            return self.scrub(error.strerror)
        return self.scrub(f"{type(error).__name__}: {error}")


def _offered_port(command: str, reply: str) -> int | None:
    """The port a 227 (PASV) or 229 (EPSV) reply offers. PASV's is the last two numbers:
    on IPv6, ProFTPd (1.3.6+) puts only what follows the address's last ':' before them
    ("(11,195,80)"); on IPv4, "h1,h2,h3,h4,p1,p2" (parentheses optional, as ftplib)."""
    port = None
    if command == "PASV":
        found = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", reply) or \
            re.search(r"\((\d+(?:,\d+){2,})\)", reply)
        numbers = [int(n) for n in re.findall(r"\d+", found.group(0))] if found else []
        port = numbers[-2] * 256 + numbers[-1] if len(numbers) >= 3 else None
    else:
        epsv = re.search(r"\((.)\1\1(\d+)\1\)", reply)
        port = int(epsv.group(2)) if epsv else None
    return port if port is not None and 0 < port < 65536 else None


def probe_ftp(address: str, port: int, target: ProbeTarget, options: ProbeOptions) -> FtpResult:
    """One address's FTPS session; never raises."""
    # A certificate names the host's name (what pyinfra connects to), else its address.
    named = _ip(target.connect) is None and not target.connect.startswith("@")
    session = _FtpsSession(address, port, target.connect if named else address, target, options)
    stage = "connect"
    try:
        session.connect()
        stage = "tls"
        session.start_tls()
        stage = "login"
        session.protect()
        session.log_in()
        stage = "passive"
        session.passive_modes()
    except _Failed as failed:
        return _ftp_result(session, stage, failed.words)
    except Exception as error:  # a timeout between steps, or what ftplib did not expect
        return _ftp_result(session, stage, session._words(error))
    finally:
        session.quit()
    return _ftp_result(session, stage, None)


def _ftp_result(session: _FtpsSession, stage: str, error: str | None) -> FtpResult:
    """What was checked, in one line: as far as the session got, and no further."""
    checks = tuple(session.checks)
    if error is not None and stage in ("connect", "tls"):
        return FtpResult(session.port, session.reach, error=error, checked=error, stopped_at=stage)
    done = "control connection + TLS ok" + (f", logged in as {session.login}"
                                           if session.login else "")
    parts = [done, *_passive_words(checks, session.family, session.passive_text,
                                   session.passive is None)]
    if error is not None:
        return FtpResult(session.port, session.reach, True, session.login, error,
                         "; ".join([*parts, error]), checks, stage)
    return FtpResult(session.port, session.reach, True, session.login, None, "; ".join(parts),
                     checks)


def _needs_login(check: PassiveCheck) -> bool:
    return check.port is None and check.reply.startswith("530")


def _pasv_not_for_ipv6(check: PassiveCheck, family: int) -> bool:
    """RFC 2428: PASV can't name an IPv6 address; ProFTPd refuses it there (501)."""
    return check.command == "PASV" and family == 6 and check.port is None \
        and check.reply[:1] in ("4", "5") and not _needs_login(check)


def _data_words(check: PassiveCheck) -> str:
    if check.data == "transferred":
        return f"data connection open, {check.detail}"
    if check.data == "connected":
        return f"data connection open ({check.detail})"
    if check.data == "failed":
        return f"data connection open, but {check.detail}"
    if check.data == "refused":
        return "data connection refused"
    return f"data connection failed: {check.detail}"  # timed out, no route


def _passive_words(checks: Sequence[PassiveCheck], family: int, span: str | None,
                   unfiltered: bool) -> list[str]:
    words = []
    for check in checks:
        if _needs_login(check):
            continue
        if _pasv_not_for_ipv6(check, family):
            words.append(f"PASV not for IPv6 ({check.reply})")
        elif check.port is None:
            words.append(f"{check.command} {check.detail or 'refused'} ({check.reply})")
        else:
            where = ("(UFW does not filter)" if unfiltered else
                     f"{'in' if check.inside else 'NOT in'} {span or 'no range UFW admits'}")
            words.append(f"{check.command} port {check.port} {where}, {_data_words(check)}")
    login = [c.command for c in checks if _needs_login(c)]
    if login:
        need = "needs" if len(login) == 1 else "need"
        words.append(f"{' and '.join(login)} {need} a login: not checked")
    return words


# --- findings ------------------------------------------------------------------------------------

NO_ANSWER = ("timeout", "unreachable")


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _ftp_findings(host: str, address: str, ftp: FtpResult, options: ProbeOptions,
                  span: str | None) -> list[Finding]:
    def finding(kind: str, severity: str, detail: str, port: int | None = None) -> Finding:
        return Finding(kind, severity, host, f"FTPS probe {detail}", port=port or ftp.port,
                       ports=str(port or ftp.port), proto="tcp", role="ftp")

    found = []
    if ftp.error is not None:
        # where it could not even talk FTP: the port; after that, the address is enough
        where = f"{_bracket(address)}:{ftp.port}" if ftp.stopped_at == "connect" else address
        found.append(finding("probe_ftp_failed", "error", f"{where}: {ftp.checked}"))
    family = 6 if ":" in address else 4
    for check in ftp.passive:
        if check.port is None:
            if not _needs_login(check) and not _pasv_not_for_ipv6(check, family):
                found.append(finding("probe_ftp_failed", "error",
                                     f"{address}: {check.command} "
                                     f"{check.detail or 'refused'}: {check.reply}"))
            continue
        if check.inside is False:
            found.append(finding("probe_passive_outside", "drift",
                                 f"{address}: {check.command} offered port {check.port}, outside "
                                 f"the passive range UFW admits ({span or 'none'})", check.port))
        if check.data not in DATA_OK:
            found.append(finding("probe_data_failed", "error",
                                 f"{address}: {check.command} {_data_failure(check)}", check.port))
    login = [c.command for c in ftp.passive if _needs_login(c)]
    if login and not [c for c in ftp.passive if c.port is not None]:
        need = "needs" if len(login) == 1 else "need"
        hint = " (--probe-user)" if not options.user else ""
        found.append(finding("probe_incomplete", "notice",
                             f"{address}: control connection + TLS ok; {' and '.join(login)} "
                             f"{need} a login: not checked{hint}"))
    return found


def _data_failure(check: PassiveCheck) -> str:
    if check.data == "refused":
        return (f"data connection to port {check.port} refused: customers' passive transfers "
                "fail")
    if check.data in ("timeout", "unreachable", "error"):
        return (f"data connection to port {check.port}: {check.detail}: customers' passive "
                "transfers stall")
    return f"data connection to port {check.port} opened, but {check.detail}"


def _port_findings(host: str, address: str, ports: Iterable[PortResult]) -> list[Finding]:
    found = []
    for p in ports:
        if p.reach == "connected" or (p.reach == "refused" and not p.listening):
            continue  # refused with nothing listening: the inside view's "idle" notice
        if p.reach == "refused":
            detail = (f"{p.port}/{p.proto} at {address} refused from the control node, though "
                      f"UFW admits it and a process listens ({p.role})")
        else:
            detail = (f"{p.port}/{p.proto} at {address} admitted by UFW, but no answer from the "
                      f"control node ({p.detail})")
        found.append(Finding("probe_port_closed", "error", host, detail, port=p.port,
                             ports=str(p.port), proto=p.proto, role=p.role))
    return found


def _silent(result: AddressResult) -> bool:
    """Nothing answered at this address: every connect timed out or had no route."""
    reaches = [p.reach for p in result.ports] + ([result.ftp.reach] if result.ftp else [])
    return bool(reaches) and all(r in NO_ANSWER for r in reaches)


def findings_for(target: ProbeTarget, probe: HostProbe, options: ProbeOptions) -> list[Finding]:
    """The probe's findings for one host. An address where nothing answered is one
    line (not one per port); all such addresses of the host share that line."""
    if probe.note:
        return [Finding("probe_incomplete", "notice", target.host, f"probe: {probe.note}")]
    silent = [a for a in probe.addresses if _silent(a)]
    found: list[Finding] = []
    if silent:
        ports = sorted({p.port for a in silent for p in a.ports}
                       | {a.ftp.port for a in silent if a.ftp})
        why = sorted({p.detail for a in silent for p in a.ports}
                     | {a.ftp.checked.split(": ", 1)[-1] for a in silent if a.ftp})
        found.append(Finding("probe_unreachable", "error", target.host,
                             f"probe: no answer from the control node at "
                             f"{', '.join(a.address for a in silent)} "
                             f"({', '.join(map(str, ports))}/tcp: {'; '.join(why)})"))
    for result in probe.addresses:
        if result in silent:
            continue
        if result.ftp is not None:
            found += _ftp_findings(target.host, result.address, result.ftp, options,
                                   probe.passive)
        found += _port_findings(target.host, result.address, result.ports)
    return found


# --- the fleet -----------------------------------------------------------------------------------

def _candidates(target: ProbeTarget) -> list[str]:
    """Where the host may be reached: what pyinfra connects to (resolved here, as
    customers resolve it), then what the host told."""
    return [*resolve(target.connect), *target.known]


def _note(target: ProbeTarget, candidates: Sequence[str], options: ProbeOptions) -> str:
    if pick_addresses(candidates, FAMILIES):
        wanted = " or ".join(f"IPv{f}" for f in options.families)
        return f"not checked: the host has no {wanted} address (--probe-family)"
    return (f"not checked: no address to probe ({target.connect!r} resolves to none here, "
            "and the host told none)")


def _ftp_job(address: str, target: ProbeTarget, options: ProbeOptions) -> FtpResult:
    return probe_ftp(address, target.ftp_port or 21, target, options)


def probe_fleet(pairs: Sequence[tuple[HostAudit, ProbeTarget]], options: ProbeOptions,
                progress: Callable[[int, int], None] | None = None) -> None:
    """Probe every host (all steps in parallel), then give each ``HostAudit`` its
    ``probe`` and findings. ``progress(done, total)`` is told as hosts finish."""
    workers = options.parallel or DEFAULT_WORKERS
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
        candidates = list(pool.map(lambda pair: _candidates(pair[1]), pairs))
        picked = [pick_addresses(found, options.families) for found in candidates]
        jobs: dict[Future[Any], tuple[int, str, int | None]] = {}
        for i, ((_, target), addresses) in enumerate(zip(pairs, picked, strict=True)):
            for address in addresses:
                if target.ftp_port is not None:
                    jobs[pool.submit(_ftp_job, address, target, options)] = (i, address, None)
                for port, _, _ in target.ports:
                    jobs[pool.submit(probe_port, address, port, options.timeout)] = \
                        (i, address, port)
        left = Counter(i for i, _, _ in jobs.values())
        done = sum(1 for i in range(len(pairs)) if not left[i])
        if progress:
            progress(done, len(pairs))
        results: dict[tuple[int, str, int | None], Any] = {}
        for future in as_completed(jobs):
            key = jobs[future]
            results[key] = future.result()
            left[key[0]] -= 1
            if not left[key[0]]:
                done += 1
                if progress:
                    progress(done, len(pairs))
    for i, ((audit, target), addresses) in enumerate(zip(pairs, picked, strict=True)):
        probe = _host_probe(i, target, addresses, results, _note(target, candidates[i], options))
        audit.probe = probe
        audit.findings += findings_for(target, probe, options)


def _host_probe(i: int, target: ProbeTarget, addresses: Sequence[str],
                results: dict[tuple[int, str, int | None], Any], note: str) -> HostProbe:
    filters = target.passive is not None
    if not addresses:
        return HostProbe(filters, target.passive_text, (), note)
    found = []
    for address in addresses:
        ftp = results.get((i, address, None)) if target.ftp_port is not None else None
        ports = []
        for port, listening, role in target.ports:
            reach, detail = results[(i, address, port)]
            ports.append(PortResult(port, "tcp", reach, detail, listening, role))
        found.append(AddressResult(address, 6 if ":" in address else 4, ftp, tuple(ports)))
    return HostProbe(filters, target.passive_text, tuple(found))


# --- renderings ------------------------------------------------------------------------------------

def document(probe: HostProbe) -> dict[str, Any]:
    """A host's ``probe`` in the JSON document."""
    return {
        "ufw_filters": probe.ufw_filters,
        "passive_range": probe.passive,
        "note": probe.note,
        "addresses": [{
            "address": a.address,
            "family": a.family,
            "ftp": None if a.ftp is None else {
                "port": a.ftp.port, "reach": a.ftp.reach, "tls": a.ftp.tls, "login": a.ftp.login,
                "error": a.ftp.error, "stopped_at": a.ftp.stopped_at, "checked": a.ftp.checked,
                "passive": [{"command": c.command, "reply": c.reply, "port": c.port,
                             "inside": c.inside, "data": c.data, "detail": c.detail}
                            for c in a.ftp.passive]},
            "ports": [{"port": p.port, "proto": p.proto, "reach": p.reach, "detail": p.detail}
                      for p in a.ports],
        } for a in probe.addresses],
    }


def summary_lines(host: str, probe: HostProbe) -> list[str]:
    """The text report's lines for a host's probe: one per address."""
    if probe.note:
        return [f"{host}: {probe.note}"]
    lines = []
    for a in probe.addresses:
        parts = [a.ftp.checked] if a.ftp else []
        if a.ports:
            parts.append("ports " + ", ".join(
                f"{p.port}/{p.proto} {p.reach}" for p in a.ports))
        lines.append(f"{host} [{a.address}]: {'; '.join(parts)}")
    return lines
