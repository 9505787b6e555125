"""Firewall a froxlor fleet: every host's UFW and ProFTPd passive ports from its roles.

    pyinfra inventory.py deploy.py --dry --diff   # preview, touches nothing
    pyinfra inventory.py deploy.py -y             # roll out
"""

from froxlor_fleet.deploys import froxlor_firewall

froxlor_firewall()
