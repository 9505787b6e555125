# Every host (lowest precedence: a group's file or host data overrides these).
# froxlor_roles and firewall_extra_rules are combined across all of a host's groups;
# other keys follow pyinfra's precedence. The values here are the defaults.

ssh_user = "root"  # pyinfra's own key; a sudo user works too: ssh_user = "admin", _sudo = True
ssh_port = 22  # opened in UFW and the port pyinfra connects to, so the two agree
ssh_allowed_sources = []  # who may reach SSH, e.g. ["198.51.100.0/24"]; empty: anywhere
# ssh_rate_limit = True  # `ufw limit`: a source's 6th new connection within 30 s is refused

firewall_default_incoming = "deny"
firewall_default_outgoing = "allow"
firewall_logging = "low"
# A UFW change that could cut SSH must be confirmed over a new SSH connection within this
# many seconds, or the host puts its previous firewall back by itself (0: off).
firewall_confirm_timeout = 60
# firewall_purge_unmanaged = True  # also remove hand-made rules (kept and listed by default)
