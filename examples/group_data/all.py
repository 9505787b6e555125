# Every host (lowest precedence: a group's file or host data overrides these).
# froxlor_roles and firewall_extra_rules are combined across all of a host's groups;
# other keys follow pyinfra's precedence. Every key of this deploy has a default (the
# README's data table); set here only what differs on your fleet, e.g.:

ssh_user = "root"  # pyinfra's own key; a sudo user works too: ssh_user = "admin", _sudo = True
# ssh_port = 2222  # opened in UFW and the port pyinfra connects to, so the two agree
# ssh_allowed_sources = ["198.51.100.0/24"]  # who may reach SSH (default: anywhere)
# ssh_rate_limit = True  # `ufw limit`: a source's 6th new connection within 30 s is refused
# firewall_confirm_timeout = 120  # seconds a new SSH connection has to confirm a change
# firewall_purge_unmanaged = True  # also remove hand-made rules (kept and listed by default)
