"""``froxlor-fleet audit --probe``: the view from the control node, against a tiny
explicit-FTPS server written here (threads and sockets on 127.0.0.1 and ::1, a
throwaway self-signed certificate made at test time). The server answers like froxlor's
ProFTPd (``TLSRequired on``): nothing but AUTH TLS before TLS, PASV and EPSV refused with
530 before a login, PASV refused on IPv6 (RFC 2428; ProFTPd Bug#3745)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from froxlor_fleet.audit.compare import FleetAudit, HostAudit, audit_host
from froxlor_fleet.audit.fact import LISTENING_SECTION, FleetAuditState
from froxlor_fleet.audit.probe import (
    ProbeOptions,
    ProbeTarget,
    pick_addresses,
    probe_fleet,
    target_for,
)
from froxlor_fleet.audit.report import document, to_json, to_prometheus, to_text
from froxlor_fleet.facts import SECTION, FleetHostState
from helpers import addrs_from_ip, build_fact
from test_audit import CONVERGED

SCHEMA = json.loads(resources.files("froxlor_fleet.audit").joinpath("audit.schema.json")
                    .read_text())
SECRET = "s3cret-Probe-pw"  # must never appear in any output
FAST = 1.0  # seconds: the probe's per-step timeout in these tests


# --- a throwaway certificate -----------------------------------------------------------

def make_certificate(folder: Path) -> tuple[str, str]:
    """A self-signed certificate and key for 127.0.0.1 and ::1 in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(folder / "cert.pem"), str(folder / "key.pem")


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The test server's throwaway certificate (made now, in a temporary folder)."""
    return make_certificate(tmp_path_factory.mktemp("cert"))


# --- the FTPS server -------------------------------------------------------------------

def free_port(address: str) -> int:
    """A port on ``address`` where nothing listens (bound, then closed: refused)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


@dataclass
class FtpsServer:
    """Explicit FTPS on ``address``: AUTH TLS, PBSZ, PROT, USER, PASS, TYPE, PASV,
    EPSV, LIST, QUIT. Its passive replies offer ``data_port``, where it listens, unless
    ``offer`` names another port (a closed one: the data connection is refused)."""

    address: str
    certificate: tuple[str, str]
    login_required: bool = True  # PASV/EPSV before USER/PASS: 530, as ProFTPd
    users: dict[str, str | None] = field(default_factory=lambda: {"anonymous": None})
    echo_password: bool = False  # a daemon that repeats the password in its 530
    greet: bool = True  # False: accept the connection and never say a word
    offer: int | None = None
    port: int = 0  # the control port (0: any free one)
    # PASV on IPv6: "refuse" (501, RFC 2428; ProFTPd before Bug#3745 was relaxed) or
    # "proftpd" (ProFTPd 1.3.6+: a 227 whose "address" is what follows the last ':')
    pasv_on_ipv6: str = "refuse"
    commands: list[str] = field(default_factory=list)  # what the client sent (PASS hidden)
    listings: int = 0  # LIST transfers that completed

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        self.control = socket.socket(family)
        self.control.bind((self.address, self.port))
        self.control.listen(8)
        self.port = self.control.getsockname()[1]
        self.data = socket.socket(family)
        self.data.bind((self.address, 0))
        self.data.listen(8)
        self.data.settimeout(5)
        self.data_port = self.data.getsockname()[1]
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*self.certificate)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def close(self) -> None:
        self.stop.set()
        self.control.close()
        self.data.close()
        for thread in self.threads:
            thread.join(5)

    def _accept(self) -> None:
        self.control.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.control.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._session, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if not self.greet:
                self.stop.wait(10)
                return
            _Session(self, conn).run()
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


class _Session:
    def __init__(self, server: FtpsServer, conn: socket.socket) -> None:
        self.server, self.conn = server, conn
        self.tls = self.protected = self.logged_in = False
        self.user: str | None = None
        self.file = conn.makefile("rb")

    def reply(self, line: str) -> None:
        self.conn.sendall(line.encode() + b"\r\n")

    def run(self) -> None:
        self.reply("220 ProFTPd-like test server ready")
        while not self.server.stop.is_set():
            line = self.file.readline()
            if not line:
                return
            verb, _, arg = line.decode().strip().partition(" ")
            verb = verb.upper()
            self.server.commands.append(verb if verb == "PASS" else f"{verb} {arg}".strip())
            if verb == "QUIT":
                self.reply("221 Goodbye.")
                return
            self.command(verb, arg)

    def command(self, verb: str, arg: str) -> None:
        if verb == "AUTH" and arg.upper() == "TLS" and not self.tls:
            self.reply("234 AUTH TLS successful")
            self.conn = self.server.context.wrap_socket(self.conn, server_side=True)
            self.file = self.conn.makefile("rb")
            self.tls = True
        elif not self.tls:
            self.reply("550 SSL/TLS required on the control channel")
        elif verb == "PBSZ":
            self.reply("200 PBSZ 0 successful")
        elif verb == "PROT":
            self.protected = arg.upper() == "P"
            self.reply(f"200 Protection set to {'Private' if self.protected else 'Clear'}")
        elif verb == "USER":
            self.user = arg
            self.reply(f"331 Password required for {arg}")
        elif verb == "PASS":
            self.password(arg)
        elif verb in ("PASV", "EPSV", "LIST") and self.server.login_required \
                and not self.logged_in:
            self.reply("530 Please login with USER and PASS")
        elif verb == "TYPE":
            self.reply("200 Type set")
        elif verb == "PASV":
            self.pasv()
        elif verb == "EPSV":
            self.reply(f"229 Entering Extended Passive Mode (|||{self.offered()}|)")
        elif verb == "LIST":
            self.listing()
        else:
            self.reply(f"500 {verb} not understood")

    def password(self, given: str) -> None:
        users = self.server.users
        if self.user in users and (users[self.user] is None or users[self.user] == given):
            self.logged_in = True
            self.reply(f"230 User {self.user} logged in")
        elif self.server.echo_password:
            self.reply(f"530 Login incorrect for {self.user} with password {given}")
        else:
            self.reply("530 Login incorrect.")

    def offered(self) -> int:
        return self.server.offer if self.server.offer is not None else self.server.data_port

    def pasv(self) -> None:
        address = self.server.address
        if ":" in address and self.server.pasv_on_ipv6 == "refuse":
            self.reply("501 PASV: Operation not permitted")
            return
        port = self.offered()
        numbers = address.rsplit(":", 1)[-1].replace(".", ",")  # ProFTPd's core_pasv
        self.reply(f"227 Entering Passive Mode ({numbers},{port >> 8},{port & 255}).")

    def listing(self) -> None:
        self.reply("150 Opening ASCII mode data connection for file list")
        data, _ = self.server.data.accept()
        try:
            if self.protected:
                data = self.server.context.wrap_socket(data, server_side=True)
            data.sendall(b"-rw-r--r--   1 ftp      ftp            6 Jan  1 00:00 hello.txt\r\n")
            if isinstance(data, ssl.SSLSocket):
                data.unwrap()
        finally:
            data.close()
        self.server.listings += 1
        self.reply("226 Transfer complete")


@contextmanager
def ftps(certificate: tuple[str, str], address: str = "127.0.0.1",
         **kwargs: object) -> Iterator[FtpsServer]:
    server = FtpsServer(address, certificate, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()


@contextmanager
def dual_stack(certificate: tuple[str, str]) -> Iterator[tuple[FtpsServer, FtpsServer]]:
    """One "daemon" on 127.0.0.1 and ::1 with the same control port, as a host's ProFTPd
    on both address families (two servers, so each one's commands can be told apart)."""
    for _ in range(50):
        v6 = FtpsServer("::1", certificate)
        try:
            v4 = FtpsServer("127.0.0.1", certificate, port=v6.port)
        except OSError:  # that port is taken on 127.0.0.1: another one
            v6.close()
            continue
        try:
            yield v4, v6
        finally:
            v4.close()
            v6.close()
        return
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


# --- running the probe -------------------------------------------------------------------

def target(server: FtpsServer, passive: str | None, ports: tuple = (),
           address: str | None = None) -> ProbeTarget:
    """web1 at the server's address, its FTP daemon on the server's port, UFW admitting
    ``passive`` ("low:high") and the role ports ``ports`` ((port, listening, role))."""
    ranges = tuple(tuple(int(p) for p in r.split(":")) for r in passive.split(",")) \
        if passive else ()
    return ProbeTarget(host="web1", connect=address or server.address, known=(),
                       ftp_port=server.port, passive=ranges, passive_text=passive,
                       ports=ports)


def run(*targets: ProbeTarget, **options: object) -> FleetAudit:
    """Probe ``targets`` as the audit does; each is a host the audit read as ok."""
    audits = [HostAudit(t.host, roles=("ftp", "ssh")) for t in targets]
    opts = ProbeOptions(timeout=float(options.pop("timeout", FAST)), **options)  # type: ignore[arg-type]
    probe_fleet(list(zip(audits, targets, strict=True)), opts)
    return FleetAudit("inventory.py", (), audits)


def kinds(fleet: FleetAudit) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in fleet.findings:
        found.setdefault(finding.kind, []).append(finding.detail)
    return found


def everything(fleet: FleetAudit) -> str:
    """Every rendering of the run: JSON (validated against the shipped schema), the
    text report and Prometheus."""
    doc = document(fleet)
    jsonschema.validate(doc, SCHEMA)
    assert doc["exit"] == fleet.exit_status
    return to_json(fleet) + to_text(fleet) + to_prometheus(fleet, now=0)


def passive_checks(fleet: FleetAudit, address: str) -> list[dict]:
    probe = document(fleet)["hosts"][0]["probe"]
    return next(a for a in probe["addresses"] if a["address"] == address)["ftp"]["passive"]


# --- the FTPS probe ---------------------------------------------------------------------------

def test_a_passive_port_inside_the_range_with_a_login_is_ok_on_ipv4(certificate) -> None:
    with ftps(certificate) as server:
        span = f"{server.data_port}:{server.data_port}"
        fleet = run(target(server, span), user="anonymous")
        assert server.listings == 2  # a real LIST over each data connection
    assert fleet.exit_status == 0 and kinds(fleet) == {}, kinds(fleet)
    checks = passive_checks(fleet, "127.0.0.1")
    assert [(c["command"], c["port"], c["inside"], c["data"]) for c in checks] == [
        ("PASV", server.data_port, True, "transferred"), ("EPSV", server.data_port, True,
                                                          "transferred")]
    text = everything(fleet)
    assert (f"web1 [127.0.0.1]: control connection + TLS ok, logged in as anonymous; "
            f"PASV port {server.data_port} in {span}") in text
    lines = to_prometheus(fleet, now=0).splitlines()
    assert 'froxlor_fleet_audit_probe_ftp{host="web1",family="ipv4"} 1' in lines
    assert 'froxlor_fleet_audit_probe_passive{host="web1",family="ipv4",command="EPSV"} 1' in lines


def test_on_ipv6_epsv_is_checked_and_pasv_refused_is_not_a_failure(certificate) -> None:
    with ftps(certificate, "::1") as server:
        span = f"{server.data_port - 5}:{server.data_port + 5}"
        fleet = run(target(server, span), user="anonymous")
    assert fleet.exit_status == 0 and kinds(fleet) == {}, kinds(fleet)
    pasv, epsv = passive_checks(fleet, "::1")
    assert (pasv["port"], pasv["data"], pasv["reply"]) == (
        None, "not_checked", "501 PASV: Operation not permitted")
    assert (epsv["port"], epsv["inside"], epsv["data"]) == (server.data_port, True, "transferred")
    assert "PASV not for IPv6 (501 PASV: Operation not permitted)" in everything(fleet)


def test_proftpds_pasv_reply_on_ipv6_is_checked_too(certificate) -> None:
    """ProFTPd 1.3.6+ answers PASV on IPv6 with "(1,p1,p2)" (the tail of "::1"): the
    port is the last two numbers, and it is checked like any other."""
    with ftps(certificate, "::1", pasv_on_ipv6="proftpd") as server:
        span = f"{server.data_port}:{server.data_port}"
        fleet = run(target(server, span), user="anonymous")
        assert server.listings == 2
    assert fleet.exit_status == 0, kinds(fleet)
    pasv, _ = passive_checks(fleet, "::1")
    assert pasv["reply"].startswith("227 Entering Passive Mode (1,")
    assert (pasv["port"], pasv["inside"], pasv["data"]) == (server.data_port, True, "transferred")


def test_a_passive_port_outside_the_range_ufw_admits_is_a_finding(certificate) -> None:
    with ftps(certificate) as server:
        span = "1000:1001" if server.data_port > 2000 else "60000:60001"
        fleet = run(target(server, span), user="anonymous")
    assert fleet.exit_status == 1 and fleet.hosts[0].verdict == "drift"  # never green
    assert kinds(fleet) == {"probe_passive_outside": [
        f"FTPS probe 127.0.0.1: PASV offered port {server.data_port}, outside the passive "
        f"range UFW admits ({span})",
        f"FTPS probe 127.0.0.1: EPSV offered port {server.data_port}, outside the passive "
        f"range UFW admits ({span})"]}
    assert "NOT in" in everything(fleet)


def test_a_data_connection_that_is_refused_is_a_finding(certificate) -> None:
    closed = free_port("127.0.0.1")
    with ftps(certificate, offer=closed) as server:
        fleet = run(target(server, f"{closed}:{closed}"), user="anonymous")
    assert fleet.exit_status == 2 and fleet.hosts[0].verdict == "error"
    found = kinds(fleet)
    assert list(found) == ["probe_data_failed"], found
    assert found["probe_data_failed"] == [
        f"FTPS probe 127.0.0.1: PASV data connection to port {closed} refused: customers' "
        "passive transfers fail",
        f"FTPS probe 127.0.0.1: EPSV data connection to port {closed} refused: customers' "
        "passive transfers fail"]
    everything(fleet)


def test_530_before_login_is_reported_as_exactly_what_was_checked(certificate) -> None:
    with ftps(certificate) as server:
        fleet = run(target(server, f"{server.data_port}:{server.data_port}"))
    assert "USER" not in " ".join(server.commands)  # no credentials: no login tried
    assert server.commands[:4] == ["AUTH TLS", "PBSZ 0", "PROT P", "PASV"]
    assert fleet.exit_status == 0  # nothing failed; nothing is claimed either
    assert kinds(fleet) == {"probe_incomplete": [
        "FTPS probe 127.0.0.1: control connection + TLS ok; PASV and EPSV need a login: not "
        "checked (--probe-user)"]}
    checks = passive_checks(fleet, "127.0.0.1")
    assert [(c["port"], c["inside"], c["data"]) for c in checks] == [
        (None, None, "not_checked"), (None, None, "not_checked")]
    assert [c["reply"] for c in checks] == ["530 Please login with USER and PASS"] * 2
    everything(fleet)
    text = to_text(fleet)
    assert "data connection" not in text and "transferred" not in text
    assert ("web1 [127.0.0.1]: control connection + TLS ok; PASV and EPSV need a login: not "
            "checked") in text
    assert 'froxlor_fleet_audit_probe_passive{' not in to_prometheus(fleet, now=0)  # unknown


def test_a_daemon_that_allows_pasv_before_login_gets_a_tcp_connect_only(certificate) -> None:
    with ftps(certificate, login_required=False) as server:
        span = f"{server.data_port}:{server.data_port}"
        fleet = run(target(server, span))
        assert server.listings == 0
    assert fleet.exit_status == 0 and kinds(fleet) == {}, kinds(fleet)
    assert [c["data"] for c in passive_checks(fleet, "127.0.0.1")] == ["connected"] * 2
    assert "data connection open (TCP connect only: no login)" in everything(fleet)


@contextmanager
def dropped(address: str = "127.0.0.1", count: int = 1) -> Iterator[list[int]]:
    """``count`` ports on ``address`` that never answer a connect, like ports a firewall
    DROPs: each listens with its accept queue full, so the kernel drops new SYNs."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    held: list[socket.socket] = []
    ports = []
    try:
        for _ in range(count):
            sock = socket.socket(family)
            sock.bind((address, 0))
            sock.listen(0)
            held.append(sock)
            ports.append(sock.getsockname()[1])
            for _ in range(3):
                filler = socket.socket(family)
                filler.setblocking(False)
                filler.connect_ex((address, ports[-1]))
                held.append(filler)
        time.sleep(0.1)
        yield ports
    finally:
        for sock in held:
            sock.close()


def test_an_unreachable_host_is_one_clear_line() -> None:
    with dropped(count=3) as (ftp, ssh, web):
        unreachable = ProbeTarget(host="web1", connect="127.0.0.1", known=(), ftp_port=ftp,
                                  passive=((50000, 50100),), passive_text="50000:50100",
                                  ports=((ssh, True, "ssh"), (web, False, "web")))
        started = time.monotonic()
        fleet = run(unreachable, timeout=0.5)
        assert time.monotonic() - started < 3  # bounded: the steps run in parallel
    assert [(f.kind, f.severity) for f in fleet.findings] == [("probe_unreachable", "error")]
    ports = ", ".join(map(str, sorted((ftp, ssh, web))))
    assert fleet.findings[0].detail == (
        f"probe: no answer from the control node at 127.0.0.1 ({ports}/tcp: timed out "
        "after 0.5 s)")
    text = everything(fleet)
    assert "Traceback" not in text and fleet.exit_status == 2


def test_a_data_connection_that_gets_no_answer_is_a_stall(certificate) -> None:
    with dropped() as (port,), ftps(certificate, offer=port) as server:
        fleet = run(target(server, f"{port}:{port}"), user="anonymous", timeout=0.5)
    assert kinds(fleet) == {"probe_data_failed": [
        f"FTPS probe 127.0.0.1: {command} data connection to port {port}: timed out after "
        "0.5 s: customers' passive transfers stall" for command in ("PASV", "EPSV")]}
    assert [c["data"] for c in passive_checks(fleet, "127.0.0.1")] == ["timeout"] * 2
    assert fleet.exit_status == 2


def test_a_refused_control_connection_is_one_line(certificate) -> None:
    closed = free_port("127.0.0.1")
    refused = ProbeTarget(host="web1", connect="127.0.0.1", known=(), ftp_port=closed,
                          passive=((50000, 50100),), passive_text="50000:50100", ports=())
    fleet = run(refused)
    assert kinds(fleet) == {"probe_ftp_failed": [
        f"FTPS probe 127.0.0.1:{closed}: could not connect: Connection refused"]}
    assert fleet.exit_status == 2


def test_a_daemon_that_never_greets_costs_one_timeout(certificate) -> None:
    with ftps(certificate, greet=False) as server:
        started = time.monotonic()
        fleet = run(target(server, "50000:50100"), timeout=0.5)
        assert time.monotonic() - started < 3
    assert kinds(fleet) == {"probe_ftp_failed": [
        f"FTPS probe 127.0.0.1:{server.port}: no greeting: timed out after 0.5 s"]}


def test_a_refused_login_is_a_finding_and_the_password_is_never_shown(certificate) -> None:
    with ftps(certificate, users={"probe": "right"}, echo_password=True) as server:
        fleet = run(target(server, "50000:50100"), user="probe", password=SECRET)
    assert kinds(fleet) == {"probe_ftp_failed": [
        "FTPS probe 127.0.0.1: control connection + TLS ok; login as probe refused: 530 Login "
        "incorrect for probe with password ***"]}
    out = everything(fleet)
    assert SECRET not in out and SECRET not in repr(fleet)


def test_a_login_with_a_password_transfers_and_keeps_it_secret(certificate) -> None:
    with ftps(certificate, users={"probe": SECRET}) as server:
        span = f"{server.data_port}:{server.data_port}"
        fleet = run(target(server, span), user="probe", password=SECRET)
        assert "PASS" in server.commands and server.listings == 2
    assert fleet.exit_status == 0, kinds(fleet)
    assert SECRET not in everything(fleet) and SECRET not in repr(fleet)
    assert SECRET not in repr(ProbeOptions(user="probe", password=SECRET))


def test_a_certificate_is_verified_only_when_asked(certificate, tmp_path: Path) -> None:
    stranger, _ = make_certificate(tmp_path)  # a CA that did not sign the server's
    with ftps(certificate) as server:
        span = f"{server.data_port}:{server.data_port}"
        trusted = run(target(server, span), user="anonymous", ca_file=certificate[0])
        fleet = run(target(server, span), user="anonymous", ca_file=stranger)
        assert "USER anonymous" in server.commands  # by the first run only:
        assert server.commands.count("USER anonymous") == 1  # no login without trust
    assert trusted.exit_status == 0, kinds(trusted)
    found = kinds(fleet)
    assert list(found) == ["probe_ftp_failed"], found
    assert found["probe_ftp_failed"][0].startswith(
        "FTPS probe 127.0.0.1: TLS handshake failed: "), found
    assert "CERTIFICATE_VERIFY_FAILED" in found["probe_ftp_failed"][0].upper().replace(" ", "_")


def test_both_address_families_of_one_host(certificate) -> None:
    with dual_stack(certificate) as (v4, v6):
        low, high = sorted((v4.data_port, v6.data_port))
        host = ProbeTarget(host="web1", connect="127.0.0.1", known=("::1",), ftp_port=v4.port,
                           passive=((low, high),), passive_text=f"{low}:{high}", ports=())
        fleet = run(host, user="anonymous")
        assert (v4.listings, v6.listings) == (2, 1)  # IPv6: EPSV only (PASV: 501)
    assert fleet.exit_status == 0, kinds(fleet)
    probe = document(fleet)["hosts"][0]["probe"]
    assert [(a["address"], a["family"]) for a in probe["addresses"]] == [
        ("127.0.0.1", 4), ("::1", 6)]
    lines = to_prometheus(fleet, now=0).splitlines()
    for family in ("ipv4", "ipv6"):
        assert f'froxlor_fleet_audit_probe_ftp{{host="web1",family="{family}"}} 1' in lines
        assert (f'froxlor_fleet_audit_probe_passive{{host="web1",family="{family}",'
                'command="EPSV"} 1') in lines
    assert not [line for line in lines if 'family="ipv6",command="PASV"' in line]
    # --probe-family: one family only
    with dual_stack(certificate) as (v4, v6):
        host = ProbeTarget(host="web1", connect="127.0.0.1", known=("::1",), ftp_port=v4.port,
                           passive=((0, 65535),), passive_text="1:65535", ports=())
        fleet = run(host, user="anonymous", families=(6,))
        assert (v4.commands, v6.listings) == ([], 1)
    assert [a["address"] for a in document(fleet)["hosts"][0]["probe"]["addresses"]] == ["::1"]


# --- role ports from the control node ---------------------------------------------------------

@contextmanager
def listening(address: str = "127.0.0.1") -> Iterator[int]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((address, 0))
        sock.listen(4)
        yield sock.getsockname()[1]


def test_role_ports_ufw_admits_are_tried_from_the_control_node() -> None:
    idle, dead = free_port("127.0.0.1"), free_port("127.0.0.1")
    with listening() as ssh:
        # ssh listens and answers; 80 is admitted with nothing listening (refused: the
        # inside view's "admitted, nothing listens" already says so); 443 has a process
        # listening, yet the connection is refused from outside
        ports = ((ssh, True, "ssh"), (idle, False, "web"), (dead, True, "web"))
        host = ProbeTarget(host="web1", connect="127.0.0.1", known=(), ftp_port=None,
                           passive=(), passive_text=None, ports=ports)
        fleet = run(host)
    assert kinds(fleet) == {"probe_port_closed": [
        f"{dead}/tcp at 127.0.0.1 refused from the control node, though UFW admits it and "
        "a process listens (web)"]}
    reach = {p["port"]: p["reach"] for p in
             document(fleet)["hosts"][0]["probe"]["addresses"][0]["ports"]}
    assert reach == {ssh: "connected", idle: "refused", dead: "refused"}
    lines = to_prometheus(fleet, now=0).splitlines()
    assert (f'froxlor_fleet_audit_probe_port{{host="web1",family="ipv4",port="{ssh}",'
            'proto="tcp"} 2') in lines
    assert fleet.exit_status == 2
    everything(fleet)


# --- what is probed ------------------------------------------------------------------------------

# The host's ``ip -o addr show``: what its state read (state.sh's addrs section) is made of.
IP_ADDR = [
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
    "2: eth0    inet 10.213.78.11/24 brd 10.213.78.255 scope global eth0\\       valid_lft "
    "forever preferred_lft forever",
    "2: eth0    inet6 fd00:213:78::11/64 scope global nodad \\       valid_lft forever "
    "preferred_lft forever",
    "2: eth0    inet6 2001:db8::99/64 scope global temporary dynamic \\       valid_lft 1 "
    "preferred_lft 1",
    "2: eth0    inet6 2001:db8::98/64 scope global deprecated \\       valid_lft 1 "
    "preferred_lft 0",
    "2: eth0    inet6 2001:db8::97/64 scope global tentative \\       valid_lft forever "
    "preferred_lft forever",
    "2: eth0    inet6 2001:db8::96/64 scope global dadfailed tentative \\       valid_lft "
    "forever preferred_lft forever",
    "2: eth0    inet6 fe80::11/64 scope link \\       valid_lft forever preferred_lft forever",
]


@pytest.fixture
def addrs(tmp_path: Path) -> list[str]:
    """The addrs section state.sh writes from ``IP_ADDR``."""
    return addrs_from_ip("".join(line + "\n" for line in IP_ADDR), tmp_path)


def test_the_hosts_global_addresses_come_from_the_audits_one_state_read(addrs) -> None:
    """No command of the probe's own: the audit's one read (the state read's one
    ``ip -o addr show``) gives the addresses customers reach, in ip's order (temporary,
    deprecated, tentative and failed ones left out: facts.UNREACHABLE)."""
    assert addrs == ["10.213.78.11", "fd00:213:78::11", "2001:db8::99 temporary",
                     "2001:db8::98 deprecated", "2001:db8::97 tentative",
                     "2001:db8::96 tentative dadfailed"]
    state = FleetAuditState().process([*build_fact({**CONVERGED, "addrs": addrs}),
                                       LISTENING_SECTION]).state
    assert state.reachable == ("10.213.78.11", "fd00:213:78::11")
    # a source naming its group still means all it holds (it connects from a temporary one)
    assert state.addresses == ("10.213.78.11", "fd00:213:78::11", "2001:db8::99",
                               "2001:db8::98", "2001:db8::97")
    command = FleetAuditState().command().get_raw_value()
    assert command.count("ip -o addr show") == 1  # read once, by state.sh
    assert command.startswith(FleetHostState().command().get_raw_value())


def test_one_address_per_family_the_connect_address_first() -> None:
    candidates = ("10.213.78.11", "192.0.2.5", "fd00:213:78::11", "2001:db8::1")
    assert pick_addresses(candidates, (4, 6)) == ("10.213.78.11", "fd00:213:78::11")
    assert pick_addresses(candidates, (6,)) == ("fd00:213:78::11",)
    assert pick_addresses(("fe80::1%eth0", "10.0.0.1"), (4, 6)) == ("10.0.0.1",)


def test_the_target_is_what_ufw_admits_on_a_read_host(addrs) -> None:
    from test_audit import SS_WEB, ftp_dump, web_ftp_plan

    lines = [*build_fact({**CONVERGED, "addrs": addrs}), f"{SECTION}ftp",
             *ftp_dump(CONVERGED["fragment"]), LISTENING_SECTION, *SS_WEB]
    state = FleetAuditState().process(lines)
    assert state.complete
    plan = web_ftp_plan()
    audit = audit_host(plan, state)
    assert audit.verdict == "ok"  # the address lines change nothing the audit reads
    aim = target_for(plan, state, audit, connect="web1.example.net")
    assert (aim.ftp_port, aim.passive, aim.passive_text) == (21, ((49152, 65534),), "49152:65534")
    # what sshd was reached on first, then the host's own global addresses customers
    # reach (not its temporary, deprecated, tentative or failed ones)
    assert aim.known == ("10.213.77.11", "10.213.78.11", "fd00:213:78::11")
    # the role ports UFW admits from anywhere, but not 21 (the FTPS probe's) nor ranges
    assert sorted(aim.ports) == [(22, True, "ssh"), (80, False, "web"), (443, False, "web")]


def test_a_ufw_that_does_not_filter_admits_every_passive_port(certificate) -> None:
    with ftps(certificate) as server:
        host = ProbeTarget(host="web1", connect="127.0.0.1", known=(), ftp_port=server.port,
                           passive=None, passive_text=None, ports=())
        fleet = run(host, user="anonymous")
    assert fleet.exit_status == 0, kinds(fleet)
    assert "UFW does not filter" in to_text(fleet)


def test_a_field_added_anywhere_in_the_probe_still_validates(certificate) -> None:
    with ftps(certificate) as server, listening() as ssh:
        span = f"{server.data_port}:{server.data_port}"
        fleet = run(target(server, span, ports=((ssh, True, "ssh"),)), user="anonymous")
    data = document(fleet)
    probe = data["hosts"][0]["probe"]
    address = probe["addresses"][0]
    for obj in (probe, address, address["ftp"], address["ftp"]["passive"][0],
                address["ports"][0]):
        obj["added_later"] = {"any": ["value"]}
    jsonschema.validate(data, SCHEMA)
