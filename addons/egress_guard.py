"""The `mitmdump -s` entry point: `mitmdump -s addons/egress_guard.py` (after
`pip install egress-sidecar`) loads the same addons `egress-sidecar run` does, configured
by `--set egress_<name>=...` options (see docs/configuration.md).

Nothing else imports this file: it exists for mitmproxy's script loader, which reads the
module's `addons` list.
"""

from addons.assembly import Sidecar

addons = [Sidecar()]
