"""Every metric the sidecar exports, defined in one place.

Each sidecar owns its own registry, so several can run in one process (tests, bench).
Label values are bounded: decisions and error kinds are fixed sets, and tool names are
normalised and capped so a hostile or buggy backend cannot explode cardinality.
"""

from __future__ import annotations

import re
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "egress_sidecar"
MAX_TOOL_LABELS = 64
_TOOL_CHARS = re.compile(r"[^a-z0-9_]+")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5)
APPROVAL_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class SidecarMetrics:
    """The sidecar's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Requests judged, by the decision enforced and the tool detected.",
            ["decision", "tool"],
            registry=r,
        )
        self.shadow_decisions = Counter(
            f"{PREFIX}_shadow_decisions",
            "Requests forwarded untouched in shadow mode (ours or the backend's) although "
            "the verdict would have blocked, rewritten or held them, by that decision.",
            ["would", "tool"],
            registry=r,
        )
        self.scan_duration = Histogram(
            f"{PREFIX}_scan_duration_seconds",
            "Time to obtain a verdict, retries included.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scan_errors = Counter(
            f"{PREFIX}_scan_errors",
            "Scans that produced no verdict, by kind of error.",
            ["kind"],
            registry=r,
        )
        self.fail_open_forwards = Counter(
            f"{PREFIX}_fail_open_forwards",
            "Requests forwarded without a verdict because fail mode is open.",
            ["kind"],
            registry=r,
        )
        self.fail_closed_blocks = Counter(
            f"{PREFIX}_fail_closed_blocks",
            "Requests refused because no verdict could be had and fail mode is closed.",
            ["kind"],
            registry=r,
        )
        self.circuit_open = Gauge(
            f"{PREFIX}_scan_circuit_open",
            "1 while the scan API circuit breaker is open (calls fail fast), else 0.",
            registry=r,
        )
        self.circuit_opens = Counter(
            f"{PREFIX}_scan_circuit_opens",
            "Times the scan API circuit breaker opened.",
            registry=r,
        )
        self.approvals_pending = Gauge(
            f"{PREFIX}_approvals_pending",
            "Requests currently held waiting for a human decision.",
            registry=r,
        )
        self.approval_wait = Histogram(
            f"{PREFIX}_approval_wait_seconds",
            "How long held requests waited, by outcome.",
            ["outcome"],
            buckets=APPROVAL_BUCKETS,
            registry=r,
        )
        self.response_queue_depth = Gauge(
            f"{PREFIX}_response_scan_queue_depth",
            "Response bodies waiting to be posted for classification.",
            registry=r,
        )
        self.response_posted = Counter(
            f"{PREFIX}_response_scans_posted",
            "Response bodies posted for classification.",
            registry=r,
        )
        self.response_dropped = Counter(
            f"{PREFIX}_response_scans_dropped",
            "Response bodies not posted, by reason.",
            ["reason"],
            registry=r,
        )
        self.websocket_messages = Counter(
            f"{PREFIX}_websocket_messages",
            "WebSocket messages from agents, by decision and what happened to them.",
            ["decision", "action"],
            registry=r,
        )
        self.event_loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late a 100 ms ticker on the event loop woke up: a stall delays every flow.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.passthrough_connections = Counter(
            f"{PREFIX}_passthrough_connections",
            "Connections to pass-through hosts, tunnelled without inspection.",
            registry=r,
        )
        self.tunnels = Counter(
            f"{PREFIX}_tunnels",
            "Tunnels judged before they open (CONNECT, redirected connections), by decision.",
            ["decision"],
            registry=r,
        )
        self.refusals = Counter(
            f"{PREFIX}_refusals",
            "Connections and protocol features the sidecar refused on its own rules, by "
            "stage (tunnel, connect, protocol, request) and reason.",
            ["stage", "reason"],
            registry=r,
        )
        self.raw_tcp_connections = Counter(
            f"{PREFIX}_raw_tcp_connections",
            "Raw TCP streams to destinations allowed to carry them (each byte scanned).",
            registry=r,
        )
        self.websocket_control_frames = Counter(
            f"{PREFIX}_websocket_control_frames",
            "WebSocket control frames from agents, by frame and what the sidecar did.",
            ["frame", "action"],
            registry=r,
        )
        self.connections_open = Gauge(
            f"{PREFIX}_connections_open", "Agent connections open now.", registry=r
        )
        self.connections_closed = Counter(
            f"{PREFIX}_connections_closed",
            "Agent connections the sidecar closed or refused to keep its budget, by reason "
            "(head_timeout, idle_timeout, evicted_at_capacity, refused_at_capacity).",
            ["reason"],
            registry=r,
        )
        self.bounded = Counter(
            f"{PREFIX}_bounded",
            "Bodies, heads, messages and trailers refused or dropped to keep a resource "
            "bound, by reason (body_too_large, bodies_held, head_too_large, head_timeout, "
            "pipelined_too_large, client_hello_too_large, http1_trailers, trailers_dropped, "
            "websocket_message_too_large).",
            ["reason"],
            registry=r,
        )
        # Brokered credentials: labelled by the names in the bindings file (bounded by it).
        self.broker_substitutions = Counter(
            f"{PREFIX}_broker_substitutions",
            "Requests and messages that left with a brokered credential's real value put in "
            "place of its placeholder, by credential name.",
            ["credential"],
            registry=r,
        )
        self.broker_refusals = Counter(
            f"{PREFIX}_broker_refusals",
            "Requests and messages refused for a brokered credential, by name and reason "
            "(unbound: its placeholder outside its bindings; value: its real value sent by "
            "the agent).",
            ["credential", "reason"],
            registry=r,
        )
        self.broker_scrubs = Counter(
            f"{PREFIX}_broker_response_scrubs",
            "Echoes of a brokered credential's real value replaced by its placeholder in "
            "what came back (headers, bodies, streams, messages), by credential name.",
            ["credential"],
            registry=r,
        )
        self.broker_reloads = Counter(
            f"{PREFIX}_broker_value_reloads",
            "Brokered value files read again after they changed, by credential name and "
            "result (rotated, unchanged, invalid: the previous value stays).",
            ["credential", "result"],
            registry=r,
        )
        self._tools: set[str] = set()
        self._tools_lock = threading.Lock()

    def tool_label(self, tool_name: str) -> str:
        """A bounded label for a tool name: [a-z0-9_], 32 chars, at most 64 distinct."""
        label = _TOOL_CHARS.sub("_", tool_name.lower()).strip("_")[:32] or "unknown"
        with self._tools_lock:
            if label in self._tools:
                return label
            if len(self._tools) >= MAX_TOOL_LABELS:
                return "other"
            self._tools.add(label)
            return label
