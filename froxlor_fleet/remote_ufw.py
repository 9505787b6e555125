"""Runs ON THE MANAGED HOST (``python3 -c <this file> <plan json>``): applies a UFW plan
in one process through ufw's own Python frontend, the code path of the ``ufw`` CLI.

Why not one ``ufw`` call per rule: each call is a new Python process, and each delete
or update reloads the running chains. Here every rule change goes through
``UFWFrontend`` exactly as ``ufw allow ...`` / ``ufw delete ...`` would, with the chain
reload deferred to one reload at the end. The files and chains come out as the CLI
would leave them (proven in the lab tests).

Order: disable (if asked) -> add -> delete -> reload once -> policies -> logging ->
enable (as ufw's boot service does it, see ``enable``). Adds come before deletes so a changed SSH rule is never absent in between.
Plan keys: disable, add (argv lists), delete ([family, tuple text]), default
([policy, direction]), logging, enable. Stdlib + ufw only; keep it Python 3.7 clean.
"""

import gettext
import json
import shutil
import sys

import ufw.common
import ufw.frontend
import ufw.util

# Untranslated messages, whatever the host's locale: main() reads one of them.
gettext.NullTranslations().install()


def rule_from_tuple(text, family):
    """A UFWRule from a ``### tuple ###`` body, as ufw's backend reads it."""
    comment = ""
    if " comment=" in text:
        text, comment = text.split(" comment=", 1)
    parts = text.split()
    action, proto, dport, dst, sport, src = parts[:6]
    iface = parts[-1]
    forward = action.startswith("route:")
    action = action.split(":")[-1]
    direction = iface.split("_")[0]
    rule = ufw.common.UFWRule(action, proto, dport, dst, sport, src, direction, forward,
                              comment.strip())
    if len(parts) == 9:
        if parts[6] != "-":
            rule.dapp = parts[6].replace("%20", " ")
        if parts[7] != "-":
            rule.sapp = parts[7].replace("%20", " ")
    if "!" in iface:
        left, right = iface.split("!")
        rule.set_interface("in", left.partition("_")[2])
        rule.set_interface("out", right.partition("_")[2])
    elif "_" in iface:
        rule.set_interface(direction, iface.partition("_")[2])
    rule.set_v6(family == 6)
    return rule


def enable(ui):
    """``ufw enable``, started the way ufw's boot service starts it (``ufw-init start``).

    ``set_enabled(True)`` runs ``ufw-init start`` and then re-applies the logging
    chains with ~75 separate iptables calls, although ufw-init has just loaded the same
    rules from the files; skipping that repeat halves the cost of enabling. The lab
    tests compare the result with the ufw CLI's (rules, chains, status). If ufw's chains
    are already loaded (odd: loaded but disabled), take the CLI path unchanged.
    """
    backend = ui.backend
    loaded, _ = ufw.util.cmd([backend.iptables, "-n", "-L", "ufw-user-input"])
    if loaded == 0:
        return ui.set_enabled(True)
    backend.set_default(backend.files["conf"], "ENABLED", "yes")
    rc, text = ufw.util.cmd([backend.files["init"], "start"])
    if rc != 0:
        backend.set_default(backend.files["conf"], "ENABLED", "no")
        raise ufw.common.UFWError("problem running ufw-init\n%s" % text)
    return "Firewall is active and enabled on system startup"


def main():
    plan = json.loads(sys.argv[1])
    # ufw checks the ownership/permissions of the program it runs as (argv[0]).
    sys.argv[0] = shutil.which("ufw") or "/usr/sbin/ufw"
    try:
        ui = ufw.frontend.UFWFrontend(False)
    except ufw.common.UFWError as e:
        sys.stderr.write("ufw: %s\n" % e.value)
        sys.exit(1)
    backend = ui.backend
    skipped_reload = []
    backend_set_rule = backend.set_rule

    def set_rule_deferred(rule, allow_reload=True):
        result = backend_set_rule(rule, allow_reload=False)
        if "skipped reloading firewall" in result:  # ufw would have reloaded here
            skipped_reload.append(True)
        return result

    backend.set_rule = set_rule_deferred
    lock = ufw.util.create_lock(lockfile="/run/ufw.lock")
    out = []
    try:
        if plan.get("disable"):
            out.append(ui.set_enabled(False))
        for argv in plan.get("add", []):
            parsed = ufw.frontend.parse_command(["ufw"] + argv)
            out.append(ui.do_action(parsed.action, parsed.data["rule"],
                                    parsed.data["iptype"], True))
        for family, text in plan.get("delete", []):
            rule = rule_from_tuple(text, family)
            rule.remove = True
            out.append(ui.set_rule(rule, "v6" if family == 6 else "v4"))
        if skipped_reload and backend.is_enabled() and not plan.get("enable"):
            backend._reload_user_rules()
            out.append("Reloaded user rules")
        for policy, direction in plan.get("default", []):
            out.append(ui.set_default_policy(policy, direction))
        if plan.get("logging"):
            out.append(ui.set_loglevel(plan["logging"]))
        if plan.get("enable"):
            out.append(enable(ui))
    except ufw.common.UFWError as e:
        sys.stderr.write("ufw: %s\n" % e.value)
        sys.exit(1)
    finally:
        ufw.util.release_lock(lock)
    sys.stdout.write("\n".join(line.strip() for line in out if line and line.strip()) + "\n")


main()
