"""`egress-sidecar`: the command-line front door."""
