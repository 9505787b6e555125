"""Firewall a froxlor fleet: every host's UFW and FTP passive ports from its roles.

    pyinfra inventory.py deploy.py --dry --diff   # preview, touches nothing
    pyinfra inventory.py deploy.py -y             # roll out
    pyinfra inventory.py deploy.py --limit web_servers   # one group (or one host)

Other deploys can share the inventory: froxlor-fleet reads only its own data keys.
"""

from froxlor_fleet.deploys import froxlor_firewall

froxlor_firewall()
