"""egress-sidecar: govern what AI agents send to the network."""

__version__ = "0.1.0"
