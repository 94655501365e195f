"""mitmproxy addons: the only code that touches mitmproxy flow objects."""
