"""Runs ON THE MANAGED HOST under ufw's own python3, as a guarded step (under the host
lock): ``python3 -c <ufwmodel.py + this file> -|NAME`` with the request on stdin.

It plans again from the host's files *after* it got the lock (a run that waited for
another must not apply a plan made before), re-checks the lockout guard, builds every
ufw rule object before it changes anything (a value ufw refuses stops the step with
nothing changed), then applies the plan in one process through ufw's own frontend,
the code path of the ``ufw`` CLI, with one chain reload at the end.

Order: disable (if asked) -> add -> delete -> reload once -> policies -> logging ->
enable (as ufw's boot service does it, see ``enable``). Adds come before deletes so a
changed SSH rule is never absent in between.

Request keys: wanted (``Want`` fields), purge, incoming, outgoing, logging, enabled;
the lockout guard: guard (on/off), session (``Session`` fields, or null: not found),
over_ssh, ssh_port; commit-confirm: confirm (wanted for changes that could affect
SSH), armed (this step is); expect ({"add": [ufw args], "delete": [tuples]}: the control
side's plan, to say when the host changed while we waited).
Exit status: 0 done, 1 ufw refused or failed (one line), 3 lockout guard refused.
"""

import gettext
import json
import shutil
import sys
from typing import Any, Callable, Dict, List, Tuple

if "plan_rules" not in globals():  # run from the package; on the host ufwmodel.py is prepended
    from froxlor_fleet.remote.ufwmodel import (
        GUARD_NO_SESSION,
        RulePlan,
        Session,
        UfwRule,
        Want,
        lockout_risk,
        needs_confirming,
        parse_rules,
        plan_rules,
    )

POLICY = {"drop": "deny", "accept": "allow", "reject": "reject"}
GUARD_REFUSED = 3


class StepError(Exception):
    """One line for the operator; nothing more to say."""


def read_state(backend: Any) -> Dict[str, Any]:
    """The host's rules, policies, logging and enabled/loaded state, from ufw's files."""
    lines = {}
    for family, key in ((4, "rules"), (6, "rules6")):
        try:
            with open(backend.files[key]) as f:
                lines[family] = [line.rstrip("\n") for line in f if line.startswith("### tuple ###")]
        except OSError:
            lines[family] = []
    import ufw.util

    loaded, _ = ufw.util.cmd([backend.iptables, "-w", "-n", "-L", "ufw-user-input"])
    defaults = backend.defaults
    return {
        "rules": parse_rules(lines[4], lines[6]),
        "ipv6": defaults.get("ipv6", "yes") == "yes",
        "incoming": POLICY.get(defaults.get("default_input_policy", "drop"), "deny"),
        "outgoing": POLICY.get(defaults.get("default_output_policy", "accept"), "allow"),
        "logging": {"on": "low"}.get(defaults.get("loglevel", "low"), defaults.get("loglevel", "low")),
        "conf_enabled": defaults.get("enabled", "no") == "yes",
        "running": loaded == 0,
    }


def ufw_rule(rule: UfwRule) -> Any:
    """A ufw UFWRule for a ``UfwRule`` read from the files (to delete it)."""
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
    made.remove = True
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


def guard(request: Dict[str, Any], state: Dict[str, Any], plan: RulePlan) -> None:
    """The lockout guard on the plan made under the lock (``ufwmodel.lockout_risk``, the
    control side's decision too): refuses what could cut SSH, also when the session is
    unknown. ``guard`` false: the operator accepted the risk."""
    if not request["guard"]:
        return
    wire = request.get("session")
    session = Session(wire["client"], wire["server"], int(wire["port"]),
                      wire.get("iface")) if wire else None
    risk = lockout_risk(plan, enabled=request["enabled"],
                        active=state["conf_enabled"] and state["running"],
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


def check_armed(request: Dict[str, Any], state: Dict[str, Any], plan: RulePlan) -> None:
    """A change that could affect SSH is made only armed (commit-confirmed) when the
    operator wants that (``confirm``). The control side armed on the plan it made; if the
    host changed while this run waited and the plan made here needs confirming, the step
    is not armed for it: refuse rather than apply it unconfirmed."""
    if not request["confirm"] or request["armed"]:
        return
    active = state["conf_enabled"] and state["running"]
    if needs_confirming(plan, enable=request["enabled"] and not active,
                        incoming_changes=request["incoming"] != state["incoming"]):
        raise StepError("the host changed while this run waited for the lock, and its UFW "
                        "change could now affect SSH but is not armed for commit-confirm; "
                        "nothing was changed: run again")


def apply(ui: Any, request: Dict[str, Any], state: Dict[str, Any], adds: List[Any],
          deletes: List[Tuple[int, Any]]) -> List[str]:
    """Change what differs; returns ufw's messages."""
    backend = ui.backend
    skipped_reload: List[bool] = []
    backend_set_rule = backend.set_rule

    def set_rule_deferred(rule: Any, allow_reload: bool = True) -> Any:
        result = backend_set_rule(rule, allow_reload=False)
        if "skipped reloading firewall" in result:  # ufw would have reloaded here
            skipped_reload.append(True)
        return result

    backend.set_rule = set_rule_deferred
    out: List[str] = []
    enabled = request["enabled"]
    active = state["conf_enabled"] and state["running"]
    if not enabled and (state["conf_enabled"] or state["running"]):
        out.append(ui.set_enabled(False))
    for parsed in adds:
        out.append(ui.do_action(parsed.action, parsed.data["rule"], parsed.data["iptype"], True))
    for family, rule in deletes:
        out.append(ui.set_rule(rule, "v6" if family == 6 else "v4"))
    will_enable = enabled and not active
    if skipped_reload and backend.is_enabled() and not will_enable:
        backend._reload_user_rules()
        out.append("Reloaded user rules")
    for direction in ("incoming", "outgoing"):
        if request[direction] != state[direction]:
            out.append(ui.set_default_policy(request[direction], direction))
    if request["logging"] != state["logging"]:
        out.append(ui.set_loglevel(request["logging"]))
    if will_enable:
        out.append(enable(ui))
    return out


def verify(backend: Any, wanted: List[Want], purge: bool) -> None:
    """Read the files again: the plan must now be empty, or ufw did not do what it said
    (it reports e.g. "Could not delete non-existent rule" as a message, not an error)."""
    state = read_state(backend)
    left = plan_rules(state["rules"], wanted, state["ipv6"], purge)
    if left.changes:
        raise StepError("after applying, ufw's files still differ from the plan (to add: %s; "
                        "to delete: %s)" % ([" ".join(w.ufw_args()) for w in left.add],
                                            [r.tuple_text() for r in left.delete]))


def _frontend() -> Any:
    import ufw.frontend

    # ufw checks the ownership/permissions of the program it runs as (argv[0]).
    sys.argv[0] = shutil.which("ufw") or "/usr/sbin/ufw"
    return ufw.frontend.UFWFrontend(False)


def run(request: Dict[str, Any], make_ui: Callable[[], Any] = _frontend,
        lockfile: str = "/run/ufw.lock") -> List[str]:
    """Plan from the host's files under ufw's own lock, check, apply, verify.
    ``make_ui``/``lockfile``: ufw's frontend and lock (tests point them at a folder)."""
    import ufw.util

    ui = make_ui()
    lock = ufw.util.create_lock(lockfile=lockfile)
    try:
        state = read_state(ui.backend)
        wanted = [Want(**w) for w in request["wanted"]]
        plan = plan_rules(state["rules"], wanted, state["ipv6"], request["purge"])
        guard(request, state, plan)
        check_armed(request, state, plan)
        adds, deletes = build(plan)
        out: List[str] = []
        expect = request.get("expect")
        fresh = {"add": [" ".join(w.ufw_args()) for w in plan.add],
                 "delete": [r.tuple_text() for r in plan.delete]}
        if expect is not None and expect != fresh:
            out.append("froxlor-fleet: the host changed while this run waited for the lock; "
                       "applied a fresh plan (%d to add, %d to delete)" % (len(plan.add), len(plan.delete)))
        out += apply(ui, request, state, adds, deletes)
        verify(make_ui().backend, wanted, request["purge"])
    finally:
        ufw.util.release_lock(lock)
    return out


def read_request(args: List[str], stdin: Any) -> Dict[str, Any]:
    """The request from stdin (an argument is limited to 128 KiB): ``-`` the whole JSON
    document, a NAME the request under that key (``{"if_switched": ..., "if_not": ...}``)."""
    document = json.load(stdin)
    if not args or args[0] == "-":
        return dict(document)
    return dict(document[args[0]])


def exit_status(error: "StepError") -> int:
    return GUARD_REFUSED if str(error).startswith("lockout guard") else 1


def main() -> int:
    # Untranslated messages, whatever the host's locale: apply() reads one of them.
    gettext.NullTranslations().install()
    sys.path.insert(0, "/usr/lib/python3/dist-packages")  # ufw's modules, whatever python3 runs us
    try:
        import ufw.common
    except ImportError:
        sys.stderr.write("froxlor-fleet: ufw's Python modules are missing on this host\n")
        return 1
    try:
        out = run(read_request(sys.argv[1:], sys.stdin))
    except StepError as e:
        sys.stderr.write("froxlor-fleet: %s\n" % e)
        return exit_status(e)
    except ufw.common.UFWError as e:
        sys.stderr.write("froxlor-fleet: ufw: %s\n" % str(e.value).strip())
        return 1
    except Exception as e:  # anything else: one line, never a traceback
        sys.stderr.write("froxlor-fleet: unexpected error in the UFW step: %s: %s\n"
                         % (type(e).__name__, e))
        return 1
    sys.stdout.write("\n".join(line.strip() for line in out if line and line.strip()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
