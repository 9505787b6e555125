"""``python -m froxlor_fleet audit inventory.py [--json]``: see ``froxlor_fleet.audit``."""

import sys

from .audit import main

if len(sys.argv) < 2 or sys.argv[1] != "audit":
    print("usage: python -m froxlor_fleet audit INVENTORY [--json] [--limit NAME]", file=sys.stderr)
    sys.exit(2)
sys.exit(main(sys.argv[2:]))
