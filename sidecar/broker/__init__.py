"""Brokered credentials: the agent holds placeholders; the sidecar puts each real value on
the wire only where it belongs, after the request is judged, and takes it out of answers."""
