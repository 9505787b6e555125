"""The fleet: which hosts, in which groups. Each group's roles and settings are in
group_data/<group>.py (data keys: the README's "Data reference").

    pyinfra inventory.py deploy.py --dry --diff   # preview per host; touches nothing
    pyinfra inventory.py deploy.py -y             # roll out; a second run changes nothing
    froxlor-fleet audit inventory.py              # read-only: does the fleet match its data?

Replace the example.net names with your servers. A name that is not the address:
("web1", {"ssh_hostname": "203.0.113.10"}). A host in several groups runs the union of
their froxlor_roles (web1 below: web and ftp).
"""

from froxlor_fleet.fleetcheck import check_fleet

web_servers = ["web1.example.net", "web2.example.net"]
ftp_servers = ["web1.example.net", "web2.example.net"]
mail_servers = ["mail1.example.net"]
dns_servers = ["ns1.example.net", "ns2.example.net"]
db_servers = ["db1.example.net"]

# Keep this last: it checks every host's data and stops the run with one line per
# problem (host, group, key, value) before pyinfra connects to any host.
check_fleet(__file__)
