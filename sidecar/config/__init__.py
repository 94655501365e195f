"""Settings (flags, `SIDECAR_*` variables, mitmproxy options), the sidecar's own API keys,
and the environment an agent needs."""
