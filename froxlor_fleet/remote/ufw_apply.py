"""UFW through ufw's own frontend, ON THE MANAGED HOST (part of the host program, see
``fleethost.py``; runs under ufw's own python3).

``Ufw`` holds ufw's lock for one transaction. ``Ufw.change`` plans from the host's
files (a run that waited for another must not apply a plan made before), builds every
ufw rule object before it changes anything (a value ufw refuses stops with nothing
changed), applies the plan in one process, the code path of the ``ufw`` CLI, with one
chain reload at the end, and reads the files again to verify.

Order: disable (if asked) -> add -> delete -> reload once -> policies -> logging ->
enable (as ufw's boot service does it, see ``enable``). Adds come before deletes so a
changed SSH rule is never absent in between.

``undo_record`` says what one change did (from the state before and after) and
``revert`` undoes exactly that: rules another tenant added or removed meanwhile
(fail2ban's bans) are left as they are.

Request keys (``ufw`` part): wanted (``Want`` fields), purge, incoming, outgoing,
logging, enabled; the lockout guard: guard (on/off), session (``Session`` fields, or
null: not found), over_ssh, ssh_port; expect ({"add": [ufw args], "delete": [tuples]}:
the control side's plan, to say when the host changed while we waited).
"""

from __future__ import annotations

import os
import shutil
import sys

# Its sibling, in the package or on the host (fleethost.py makes its folder the package)
from .ufwmodel import (
    BLOCKING,
    GUARD_NO_SESSION,
    RulePlan,
    Session,
    UfwRule,
    Want,
    lockout_risk,
    parse_rules,
    parse_tuple_line,
    plan_rules,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy: true)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    State = Dict[str, Any]

POLICY = {"drop": "deny", "accept": "allow", "reject": "reject"}
GUARD_REFUSED = 3


class StepError(Exception):
    """One line for the operator; nothing more to say."""


def exit_status(error: StepError) -> int:
    return GUARD_REFUSED if str(error).startswith("lockout guard") else 1


def read_state(backend: Any) -> State:
    """The host's rules, policies, logging and enabled/loaded state, from ufw's files."""
    import ufw.util

    lines = {}
    for family, key in ((4, "rules"), (6, "rules6")):
        try:
            with open(backend.files[key]) as f:
                lines[family] = [line.rstrip("\n") for line in f if line.startswith("### tuple ###")]
        except OSError:
            lines[family] = []
    loaded, _ = ufw.util.cmd([backend.iptables, "-w", "-n", "-L", "ufw-user-input"])
    defaults = backend.defaults
    level = defaults.get("loglevel", "low")
    return {
        "rules": parse_rules(lines[4], lines[6]),
        "ipv6": defaults.get("ipv6", "yes") == "yes",
        "incoming": POLICY.get(defaults.get("default_input_policy", "drop"), "deny"),
        "outgoing": POLICY.get(defaults.get("default_output_policy", "accept"), "allow"),
        "logging": {"on": "low"}.get(level, level),
        "conf_enabled": defaults.get("enabled", "no") == "yes",
        "running": loaded == 0,
    }


def active(state: State) -> bool:
    return bool(state["conf_enabled"] and state["running"])


def ufw_rule(rule: UfwRule, remove: bool = True) -> Any:
    """A ufw UFWRule for a ``UfwRule`` read from the files (to delete or re-add it)."""
    import ufw.common
    import ufw.util

    forward = rule.action.startswith("route:")
    direction, _, iface = rule.iface.partition("_")
    # ufw keeps comments hex-encoded in its rule objects (and matches on them)
    comment = ufw.util.hex_encode(rule.comment) if rule.comment else ""
    made = ufw.common.UFWRule(rule.action.split(":")[-1], rule.proto, rule.dport, rule.dst,
                              rule.sport, rule.src, direction, forward, comment)
    if rule.dapp != "-":
        made.dapp = rule.dapp.replace("%20", " ")
    if rule.sapp != "-":
        made.sapp = rule.sapp.replace("%20", " ")
    if "!" in rule.iface:
        left, right = rule.iface.split("!")
        made.set_interface("in", left.partition("_")[2])
        made.set_interface("out", right.partition("_")[2])
    elif iface:
        made.set_interface(direction, iface)
    made.set_v6(rule.family == 6)
    made.remove = remove
    return made


def build(plan: RulePlan) -> Tuple[List[Any], List[Tuple[int, Any]]]:
    """Every ufw object the plan needs, before anything changes."""
    import ufw.common
    import ufw.frontend

    adds = []
    for want in plan.add:
        try:
            parsed = ufw.frontend.parse_command(["ufw"] + want.ufw_args())
        except SystemExit:  # ufw's parse_command prints its error and exits
            raise StepError("ufw refuses rule %r (its message is above; nothing was changed)"
                            % " ".join(want.ufw_args())) from None
        except (ufw.common.UFWError, ValueError) as e:
            raise StepError("ufw refuses rule %r: %s (nothing was changed)"
                            % (" ".join(want.ufw_args()), getattr(e, "value", e))) from e
        adds.append(parsed)
    deletes = []
    for rule in plan.delete:
        try:
            deletes.append((rule.family, ufw_rule(rule)))
        except (ufw.common.UFWError, ValueError) as e:
            raise StepError("cannot read rule %r: %s (nothing was changed)"
                            % (rule.tuple_text(), getattr(e, "value", e))) from e
    return adds, deletes


def enable(ui: Any) -> str:
    """``ufw enable``, started the way ufw's boot service starts it (``ufw-init start``).

    ``set_enabled(True)`` runs ``ufw-init start`` and then re-applies the logging
    chains with ~75 separate iptables calls, although ufw-init has just loaded the same
    rules from the files; skipping that repeat halves the cost of enabling. The lab
    tests compare the result with the ufw CLI's (rules, chains, status). If ufw's chains
    are already loaded (odd: loaded but disabled), take the CLI path unchanged.
    """
    import ufw.common
    import ufw.util

    backend = ui.backend
    loaded, _ = ufw.util.cmd([backend.iptables, "-n", "-L", "ufw-user-input"])
    if loaded == 0:
        message: str = ui.set_enabled(True)
        return message
    backend.set_default(backend.files["conf"], "ENABLED", "yes")
    rc, text = ufw.util.cmd([backend.files["init"], "start"])
    if rc != 0:
        backend.set_default(backend.files["conf"], "ENABLED", "no")
        raise ufw.common.UFWError("problem running ufw-init\n%s" % text)
    return "Firewall is active and enabled on system startup"


def session_of(request: Dict[str, Any]) -> Optional[Session]:
    wire = request.get("session")
    return Session(wire["client"], wire["server"], int(wire["port"]),
                   wire.get("iface")) if wire else None


def guard(request: Dict[str, Any], state: State, plan: RulePlan) -> None:
    """The lockout guard on the plan made under the lock (``ufwmodel.lockout_risk``, the
    control side's decision too): refuses what could cut SSH, also when the session is
    unknown. ``guard`` false: the operator accepted the risk."""
    if not request["guard"]:
        return
    session = session_of(request)
    risk = lockout_risk(plan, enabled=request["enabled"], active=active(state),
                        incoming_now=state["incoming"], incoming=request["incoming"],
                        session=session, ipv6=state["ipv6"], ssh_port=int(request["ssh_port"]),
                        over_ssh=request["over_ssh"])
    if risk == GUARD_NO_SESSION:
        raise StepError("lockout guard (checked again under the host lock): could not find "
                        "the SSH session this run uses, and the change could cut SSH; nothing "
                        "was changed")
    if risk is not None:
        assert session is not None
        raise StepError("lockout guard (checked again under the host lock): the resulting UFW "
                        "rules would not admit this SSH session (%s -> %s:%s); nothing was changed"
                        % (session.client, session.server, session.port))


class _DeferredReload:
    """ufw reloads its chains after every rule it sets; defer that to one reload."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.skipped = False
        original = backend.set_rule

        def set_rule(rule: Any, allow_reload: bool = True) -> Any:
            result = original(rule, allow_reload=False)
            if "skipped reloading firewall" in result:  # ufw would have reloaded here
                self.skipped = True
            return result

        backend.set_rule = set_rule

    def reload(self, out: List[str], unless_enabling: bool) -> None:
        if self.skipped and self.backend.is_enabled() and not unless_enabling:
            self.backend._reload_user_rules()
            out.append("Reloaded user rules")


def apply(ui: Any, request: Dict[str, Any], state: State, adds: List[Any],
          deletes: List[Tuple[int, Any]]) -> List[str]:
    """Change what differs; returns ufw's messages."""
    deferred = _DeferredReload(ui.backend)
    out: List[str] = []
    enabled = request["enabled"]
    if not enabled and (state["conf_enabled"] or state["running"]):
        out.append(ui.set_enabled(False))
    for parsed in adds:
        out.append(ui.do_action(parsed.action, parsed.data["rule"], parsed.data["iptype"], True))
    for family, rule in deletes:
        out.append(ui.set_rule(rule, "v6" if family == 6 else "v4"))
    will_enable = enabled and not active(state)
    deferred.reload(out, unless_enabling=will_enable)
    for direction in ("incoming", "outgoing"):
        if request[direction] != state[direction]:
            out.append(ui.set_default_policy(request[direction], direction))
    if request["logging"] != state["logging"]:
        out.append(ui.set_loglevel(request["logging"]))
    if will_enable:
        out.append(enable(ui))
    return out


def _frontend() -> Any:
    import ufw.frontend

    # ufw checks the ownership/permissions of the program it runs as (argv[0]).
    sys.argv[0] = shutil.which("ufw") or "/usr/sbin/ufw"
    return ufw.frontend.UFWFrontend(False)


class Ufw:
    """ufw's frontend under ufw's own lock, one per step (``with u:``): reading, applying
    and verifying in a step share it (each frontend reads the configuration and profiles
    and starts ``iptables -V``). A new step gets a new one: ufw keeps the rules in memory
    and writes them back whole, so a frontend from before the lock was released would
    write back a ban fail2ban's ``ufw`` made meanwhile as gone. ``make_ui``/``lockfile``:
    ufw's frontend and lock (tests point them at a folder)."""

    def __init__(self, make_ui: Callable[[], Any] = _frontend,
                 lockfile: str = "/run/ufw.lock") -> None:
        self.make_ui = make_ui
        self.lockfile = lockfile
        self.lock: Any = None
        self._ui: Any = None

    @property
    def ui(self) -> Any:
        if self._ui is None:
            self._ui = self.make_ui()
        return self._ui

    def __enter__(self) -> Ufw:
        import ufw.util

        self.lock = ufw.util.create_lock(lockfile=self.lockfile)
        self._ui = None  # read the files as they are now that we hold the lock
        return self

    def __exit__(self, *exc: object) -> None:
        import ufw.util

        ufw.util.release_lock(self.lock)

    def state(self) -> State:
        return read_state(self.ui.backend)

    def plan(self, request: Dict[str, Any], state: State,
             extra: Optional[List[Want]] = None) -> RulePlan:
        wanted = [Want(**w) for w in request["wanted"]] + list(extra or [])
        return plan_rules(state["rules"], wanted, state["ipv6"], request["purge"])

    def change(self, request: Dict[str, Any], state: State, plan: RulePlan,
               extra: Optional[List[Want]] = None) -> Tuple[List[str], State]:
        """Apply ``plan`` (made from ``state``) and the policies/logging/enabled state of
        ``request``; returns ufw's messages and the state after, verified."""
        adds, deletes = build(plan)
        out = apply(self.ui, request, state, adds, deletes)
        after = self.state()
        left = self.plan(request, after, extra)
        if left.changes:
            raise StepError("after applying, ufw's files still differ from the plan (to add: %s; "
                            "to delete: %s)" % ([" ".join(w.ufw_args()) for w in left.add],
                                                [r.tuple_text() for r in left.delete]))
        return out, after


# --- what a change did, and undoing exactly that ------------------------------------------

def _wire(rule: UfwRule) -> List[Any]:
    return [rule.family, rule.tuple_text()]


def _unwire(item: List[Any]) -> UfwRule:
    rule = parse_tuple_line("### tuple ### " + str(item[1]), int(item[0]))
    if rule is None:
        raise StepError("unreadable rule in the undo record: %r" % (item,))
    return rule


def undo_record(before: State, after: State, record: Optional[Dict[str, Any]] = None
                ) -> Dict[str, Any]:
    """What the change from ``before`` to ``after`` did, as ``revert`` undoes it (merged
    into ``record``, from an earlier step of the same transaction: its "before" wins)."""
    record = dict(record or {"added": [], "changed": [], "removed": []})
    had = {r.key: r for r in before["rules"]}
    has = {r.key: r for r in after["rules"]}
    for rule in after["rules"]:
        old = had.get(rule.key)
        if old is None:
            record["added"].append(_wire(rule))
        elif (old.action, old.comment) != (rule.action, rule.comment):
            record["changed"].append([_wire(old), _wire(rule)])
    for rule in before["rules"]:
        if rule.key not in has:
            record["removed"].append(_wire(rule))
    for key in ("incoming", "outgoing", "logging", "conf_enabled", "running"):
        if before[key] != after[key] and key not in record:
            record[key] = [before[key], after[key]]
    return record


def predicted_undo(state: State, plan: RulePlan, request: Dict[str, Any]) -> Dict[str, Any]:
    """The undo record of ``plan`` before it is applied (for a revert armed before the
    change: ``revert`` skips what did not happen)."""
    after = dict(state, rules=plan.final, incoming=request["incoming"],
                 outgoing=request["outgoing"], logging=request["logging"])
    if request["enabled"] and not active(state):
        after.update(conf_enabled=True, running=True)
    elif not request["enabled"]:
        after.update(conf_enabled=False, running=False)
    return undo_record(state, after)


def revert(record: Dict[str, Any], make_ui: Callable[[], Any] = _frontend,
           lockfile: str = "/run/ufw.lock") -> Tuple[bool, str]:
    """Undo what ``record`` says a change did, where it still stands as that change
    left it: our added rules are deleted, rules we changed or removed come back,
    policies, logging and the enabled state go back. Rules others added or removed
    meanwhile stay as they are. Returns (ok, one line)."""
    with Ufw(make_ui, lockfile) as u:
        state = u.state()
        now = {r.key: r for r in state["rules"]}
        ui = u.ui
        deferred = _DeferredReload(ui.backend)
        done: List[str] = []
        for item in record.get("added", []):
            rule = _unwire(item)
            have = now.get(rule.key)
            if have is not None and (have.action, have.comment) == (rule.action, rule.comment):
                ui.set_rule(ufw_rule(have), "v6" if rule.family == 6 else "v4")
                done.append("-" + rule.describe())
        for old_item, new_item in record.get("changed", []):
            old, new = _unwire(old_item), _unwire(new_item)
            have = now.get(old.key)
            if have is not None and (have.action, have.comment) == (new.action, new.comment):
                _readd(ui, old)
                done.append("~" + old.describe())
        for item in record.get("removed", []):
            rule = _unwire(item)
            if rule.key not in now:
                _readd(ui, rule)
                done.append("+" + rule.describe())
        enabled_was = record.get("conf_enabled", [None])[0]
        running_was = record.get("running", [None])[0]
        was_active = (enabled_was if enabled_was is not None else state["conf_enabled"]) and (
            running_was if running_was is not None else state["running"])
        toggles = enabled_was is not None or running_was is not None
        out: List[str] = []
        if toggles and not was_active and (state["conf_enabled"] or state["running"]):
            out.append(ui.set_enabled(False))
            if enabled_was:  # ENABLED=yes but chains not loaded: keep ufw.conf as it was
                ui.backend.set_default(ui.backend.files["conf"], "ENABLED", "yes")
            done.append("ufw disabled")
        deferred.reload(out, unless_enabling=False)
        for key in ("incoming", "outgoing"):
            if key in record and state[key] == record[key][1]:
                ui.set_default_policy(record[key][0], key)
                done.append("default %s %s" % (key, record[key][0]))
        if "logging" in record and state["logging"] == record["logging"][1]:
            ui.set_loglevel(record["logging"][0])
            done.append("logging %s" % record["logging"][0])
        if toggles and was_active and not active(state):
            enable(ui)
            done.append("ufw enabled")
    return True, ("UFW: " + ", ".join(done)) if done else "UFW: nothing left to undo"


def _readd(ui: Any, rule: UfwRule) -> None:
    """Add ``rule`` back: a deny/reject before the allows (as the plan adds them), else
    at the end; over an existing slot ufw updates the rule in place."""
    made = ufw_rule(rule, remove=False)
    if rule.verdict in BLOCKING:
        made.set_position(-1)  # ufw prepend
    ui.set_rule(made, "v6" if rule.family == 6 else "v4")


class _Remembered:
    """A ``ufw.util`` function whose answer is remembered, per arguments (which iptables
    binary: iptables or ip6tables), for the life of this process and, with ``store``,
    for the rest of this boot.

    ufw's backend asks ``get_iptables_version`` in every new frontend, and
    ``get_netfilter_capabilities`` (can the kernel's netfilter do ``-m recent``, which
    ``limit`` rules need: a test chain created, two rules appended, flushed, deleted)
    for iptables and ip6tables the first time a frontend changes a rule: ~12 process
    executions a transaction, and ``Ufw`` makes a fresh frontend for each step. Their
    answers are the kernel's and the binary's, not ufw's rules or settings (which stay
    read fresh per step: another tenant may change those between steps): they can't
    change while this boot runs the same binary. So they are kept in ``store`` (in our
    root-only state folder, written under the host lock), keyed by the boot and the
    binary's identity; another boot or an upgraded iptables asks again. The revert
    timer, a fork, inherits them. A question ufw's code fails on (an OSError) is not
    remembered: it is asked again, as before."""

    def __init__(self, name: str, ask: Callable[..., Any], store: Optional[_Store]) -> None:
        self.name = name
        self.ask = ask
        self.store = store
        self.answers: Dict[Any, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in self.answers:
            stored = "%s %r %s" % (self.name, key, _identity(args[0] if args else None))
            if self.store is not None and stored in self.store.answers:
                self.answers[key] = self.store.answers[stored]
            else:
                self.answers[key] = self.ask(*args, **kwargs)
                if self.store is not None:
                    self.store.keep(stored, self.answers[key])
        return self.answers[key]  # ufw only reads it (a version string, a list of names)


def _identity(exe: Any) -> str:
    """The iptables binary a question is about: its file (an upgrade replaces it)."""
    try:
        st = os.stat(os.path.realpath(str(exe))) if exe else None
    except OSError:
        return "unknown"
    return "%d:%d:%d" % (st.st_ino, st.st_size, st.st_mtime_ns) if st else "default"


class _Store:
    """``_Remembered``'s answers for this boot, in a JSON file."""

    def __init__(self, path: str) -> None:
        import json

        self.path = path
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                self.boot = f.read().strip()
        except OSError:
            self.boot = ""
        self.answers: Dict[str, Any] = {}
        try:
            with open(path) as f:
                kept = json.load(f)
            if self.boot and kept.get("boot") == self.boot and isinstance(kept.get("answers"), dict):
                self.answers = kept["answers"]
        except (OSError, ValueError, AttributeError):
            pass

    def keep(self, key: str, answer: Any) -> None:
        import json

        if not self.boot:
            return
        self.answers[key] = answer
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            tmp = "%s.%d" % (self.path, os.getpid())
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump({"boot": self.boot, "answers": self.answers}, f)
            os.rename(tmp, self.path)
        except (OSError, TypeError, ValueError):
            pass  # only a cache: asked again next time


def import_ufw(store: Optional[str] = None) -> Any:
    """ufw's own modules, whatever python3 runs us; untranslated messages, whatever the
    host's locale (``apply`` reads one of them); its iptables version and netfilter
    capability tests once per process, and with ``store`` (a file) once per boot
    (``_Remembered``)."""
    import gettext

    gettext.NullTranslations().install()
    home = os.environ.get("FROXLOR_FLEET_UFW_HOME", "/usr/lib/python3/dist-packages")
    if home not in sys.path:
        sys.path.insert(0, home)
    import ufw.common
    import ufw.util

    kept = _Store(store) if store else None
    for name in ("get_iptables_version", "get_netfilter_capabilities"):
        ask = getattr(ufw.util, name)
        if isinstance(ask, _Remembered):
            if (ask.store.path if ask.store else None) == store:
                continue  # (a host process asks once: the boot hook, or a transaction)
            ask = ask.ask
        setattr(ufw.util, name, _Remembered(name, ask, kept))
    return ufw.common
