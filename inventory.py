"""Example froxlor fleet. Roles and settings live in group_data/<group>.py.

A host in several groups runs the union of their froxlor_roles.
"""

from froxlor_fleet.fleetcheck import check_fleet

web_servers = ["web1.example.net", "web2.example.net"]
ftp_servers = ["web1.example.net", "web2.example.net"]
mail_servers = ["mail1.example.net"]
dns_servers = ["ns1.example.net", "ns2.example.net"]
db_servers = ["db1.example.net"]

# Stop with one clear line per bad value before pyinfra connects to any host.
check_fleet(__file__)
