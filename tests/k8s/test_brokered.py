"""The brokered-credentials component, checked offline: the real values reach the
sidecar only, as whole-directory mounts that Kubernetes updates in place, and the agent
holds the placeholders the sidecar will recognise."""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any

from sidecar.broker.bindings import Bindings, parse_bindings
from sidecar.broker.placeholders import PRESETS, placeholder_for
from sidecar.cli.main import build_parser
from tests.k8s.test_manifests import K8S, pod_spec, render, sidecar_of, workloads

EXAMPLE = "examples/brokered"
SECRET = "agent-upstream-credentials"  # created by the user, never rendered
# The keys the shipped bindings read; each is a file in the Secret's mounted directory.
SECRET_KEYS = {"openai-api-key"}
CONFIG_MAP = "egress-sidecar-brokered-credentials"
FLAG = "--brokered-credentials"


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["containers"] + spec.get("initContainers", [])


def secret_volumes(spec: dict[str, Any]) -> set[str]:
    """Names of the pod's volumes that hold the upstream credentials Secret."""
    names = set()
    for volume in spec["volumes"]:
        if volume.get("secret", {}).get("secretName") == SECRET:
            names.add(volume["name"])
        sources = volume.get("projected", {}).get("sources", [])
        if any(s.get("secret", {}).get("name") == SECRET for s in sources):
            names.add(volume["name"])
    return names


def mount_of(container: dict[str, Any], volume: str) -> dict[str, Any]:
    (mount,) = [m for m in container.get("volumeMounts", []) if m["name"] == volume]
    return mount


def brokered_file(sidecar: dict[str, Any]) -> PurePosixPath:
    args = [a.replace("$(POD_IP)", "10.1.2.3") for a in sidecar["args"]]
    assert sum(a.startswith(FLAG) for a in args) == 1
    parsed = build_parser().parse_args(args)  # a real flag of `run`
    assert parsed.command == "run"
    return PurePosixPath(str(parsed.brokered_credentials))


def bindings_of(docs: list[dict[str, Any]], spec: dict[str, Any]) -> tuple[Bindings, str]:
    """The bindings the sidecar reads, and the mount path of the Secret's directory."""
    sidecar = sidecar_of(spec)
    path = brokered_file(sidecar)
    (mount,) = [m for m in sidecar["volumeMounts"] if path.parent == PurePosixPath(m["mountPath"])]
    assert not {"subPath", "subPathExpr"} & set(mount)  # updated in place
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    name = volume["configMap"]["name"]
    assert name.startswith(f"{CONFIG_MAP}-")  # generated: a change rolls the pod
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
    bindings = parse_bindings(config_map["data"][path.name], "cm", [])
    (secret_volume,) = secret_volumes(spec)
    return bindings, mount_of(sidecar, secret_volume)["mountPath"]


def test_the_real_values_are_mounted_in_the_sidecar_only():
    docs = render(EXAMPLE)
    assert not [d for d in docs if d["kind"] == "Secret"]  # no value ships with the example
    (workload,) = workloads(docs)
    spec = pod_spec(workload)
    (volume_name,) = secret_volumes(spec)
    for container in containers(spec):
        mounted = [m for m in container.get("volumeMounts", []) if m["name"] == volume_name]
        if container["name"] != "egress-sidecar":
            assert not mounted, container["name"]
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef", {})
            assert ref.get("name") != SECRET, (container["name"], env["name"])
        for source in container.get("envFrom", []):
            assert source.get("secretRef", {}).get("name") != SECRET, container["name"]
    sidecar = sidecar_of(spec)
    mount = mount_of(sidecar, volume_name)
    # A subPath mount never sees a Secret update (Kubernetes swaps a symlink).
    assert not {"subPath", "subPathExpr"} & set(mount)
    assert mount["readOnly"] is True
    # Secret files are root-owned: the sidecar's non-root UID must still read them.
    volume = next(v for v in spec["volumes"] if v["name"] == volume_name)
    mode = volume["secret"].get("defaultMode", 0o644)
    fs_group = spec["securityContext"].get("fsGroup")
    sc = sidecar["securityContext"]
    assert mode & 0o004 or (mode & 0o040 and fs_group == sc["runAsGroup"])
    assert not mode & 0o222  # and never write them
    assert volume["secret"].get("optional") is not True  # no value, no start


def test_the_agent_holds_the_placeholders():
    docs = render(EXAMPLE)
    (workload,) = workloads(docs)
    spec = pod_spec(workload)
    (agent,) = [c for c in spec["containers"] if c["name"] == "agent"]
    env = {e["name"]: e for e in agent["env"]}
    expected = placeholder_for("openai", PRESETS["openai"])
    assert env["OPENAI_API_KEY"] == {"name": "OPENAI_API_KEY", "value": expected}
    # Every credential the bindings give an agent variable has its placeholder there.
    bindings, _ = bindings_of(docs, spec)
    for credential in bindings.credentials:
        if credential.agent_env is not None:
            assert env[credential.agent_env].get("value") == credential.placeholder


def test_the_sidecar_reads_bindings_whose_values_are_secret_keys():
    docs = render(EXAMPLE)
    (workload,) = workloads(docs)
    spec = pod_spec(workload)
    bindings, secret_dir = bindings_of(docs, spec)
    assert [c.name for c in bindings.credentials] == ["openai"]
    for credential in bindings.credentials:
        assert credential.value.file is not None, credential.name
        path = PurePosixPath(str(credential.value.file))
        assert path.parent == PurePosixPath(secret_dir), credential.name
        assert path.name in SECRET_KEYS, credential.name
    (openai,) = bindings.credentials
    assert openai.carry == "bearer"
    assert [d.url for d in openai.destinations] == ["https://api.openai.com/v1/"]
    # The shipped file is the one the ConfigMap carries.
    shipped = (K8S / "components/brokered-credentials/bindings.yaml").read_text()
    assert parse_bindings(shipped, "component", []) == bindings


def test_composes_with_enforced_redirect(tmp_path):
    """Listed after enforced-redirect (which replaces the sidecar's args), the flag stays."""
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources: [{rel}/base]\n"
        f"components: [{rel}/components/enforced-redirect, "
        f"{rel}/components/brokered-credentials]\n"
    )
    docs = render(str(tmp_path))
    (workload,) = workloads(docs)
    spec = pod_spec(workload)
    sidecar = sidecar_of(spec)
    assert "--transparent-listen=127.0.0.1:15001" in sidecar["args"]
    bindings, _ = bindings_of(docs, spec)
    assert bindings.credentials
    assert {c["name"] for c in spec["initContainers"]} == {"egress-redirect", "egress-sidecar"}
    (volume_name,) = secret_volumes(spec)
    for container in containers(spec):
        if container["name"] != "egress-sidecar":
            names = {m["name"] for m in container.get("volumeMounts", [])}
            assert volume_name not in names, container["name"]
