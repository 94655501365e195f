"""Metrics, the decision log and the admin server that exposes them."""
