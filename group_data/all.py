# Applies to every host (lowest precedence). Lists such as froxlor_roles are
# combined across groups; other keys follow pyinfra's precedence.
ssh_user = "root"
ssh_port = 22
ssh_allowed_sources = []  # empty: SSH from anywhere
firewall_default_incoming = "deny"
firewall_default_outgoing = "allow"
firewall_logging = "low"
