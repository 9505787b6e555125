# Applies to every host (lowest precedence). Lists such as froxlor_roles are
# combined across groups; other keys follow pyinfra's precedence. Every key of this
# deploy has a default (catalog.DEFAULTS, the README's data table): set only what
# differs.
ssh_user = "root"
