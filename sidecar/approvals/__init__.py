"""Requests held for a human: the approval store at the sidecar, and the waiter that
holds a request until its approval is decided."""
