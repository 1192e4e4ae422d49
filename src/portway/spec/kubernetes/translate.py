"""Kubernetes objects (Pod, Deployment, StatefulSet, Service, ConfigMap,
Secret, Namespace) as portway workload documents, with a verdict for every
key path of every object, the secrets the ConfigMaps and Secrets become, and
the namespace policies Pod Security labels ask for.

Every object is first checked against the official Kubernetes schema
(``schema``), so a wrong type or unknown field is reported with file,
document, object and key path before anything is translated. The workload
documents then go through portway's own model like any workload file.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from portway.errors import Issue, SpecError
from portway.spec.compose.keys import Rule, Verdict
from portway.spec.compose.mapping import KeyVerdict
from portway.spec.kubernetes.pods import DEFAULT_RUNTIME_CLASSES
from portway.spec.kubernetes.rules import SERVICE_RULES, WORKLOAD_RULES, canonical, rule_for
from portway.spec.kubernetes.schema import DEFAULT_VERSION, object_issue
from portway.spec.kubernetes.source import Manifest
from portway.spec.model import Isolation

__all__ = ["KubeWorkload", "StoredSecret", "Translated", "configmap_secret_name", "translate"]

WORKLOAD_KINDS = ("Pod", "Deployment", "StatefulSet")
SUPPORTED_KINDS = (*WORKLOAD_KINDS, "Service", "ConfigMap", "Secret", "Namespace")

#: RuntimeClass (or handler) names and the tier each stands for
_RUNTIME_TIERS: dict[str, Isolation] = {
    **{name: tier for tier, name in DEFAULT_RUNTIME_CLASSES.items()},
    "runsc": Isolation.SANDBOXED,
    "kata": Isolation.MICROVM,
    "kata-qemu": Isolation.MICROVM,
    "kata-fc": Isolation.MICROVM,
    "kata-clh": Isolation.MICROVM,
    "spin": Isolation.WASM,
    "wasmedge": Isolation.WASM,
}
_PSA_LABEL = "pod-security.kubernetes.io/enforce"
_CONFIGMAP_PREFIX = "configmap-"


@dataclass
class KubeWorkload:
    """One Pod, Deployment or StatefulSet as a portway workload document."""

    kind: str
    name: str
    file: str
    index: int  # document number in the file
    document: dict[str, Any]
    keys: list[KeyVerdict] = field(default_factory=list)
    pod_labels: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class StoredSecret:
    """A portway secret to create before the workloads (a Secret or ConfigMap)."""

    namespace: str
    name: str
    data: Mapping[str, bytes]
    source: str  # "Secret db" or "ConfigMap web-config", for messages


@dataclass
class Translated:
    workloads: list[KubeWorkload]
    secrets: list[StoredSecret]
    namespaces: list[dict[str, Any]]  # portway Namespace documents


def configmap_secret_name(name: str) -> str:
    """The portway secret a ConfigMap's values are delivered from (a
    ConfigMap and a Secret may share a name in Kubernetes)."""
    return f"{_CONFIGMAP_PREFIX}{name}"


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def translate(
    manifests: list[Manifest], *, strict: bool = False, version: str = DEFAULT_VERSION
) -> Translated:
    """Raises SpecError with every issue of every object."""
    issues: list[Issue] = []
    for manifest in manifests:
        found = object_issue(
            manifest.data, file=manifest.file, index=manifest.index, version=version
        )
        if found is not None:
            issues.append(
                Issue(
                    found.message,
                    file=found.file,
                    document=found.document,
                    path=found.path,
                    line=manifest.line(found.path),
                    hint=found.hint,
                    subject=found.subject,
                )
            )
    if issues:  # the rest would only repeat what the schema said
        raise SpecError(issues)
    for manifest in manifests:
        if manifest.kind not in SUPPORTED_KINDS:
            issues.append(
                manifest.issue(
                    f"kind {manifest.kind} is not imported; portway reads "
                    f"{', '.join(SUPPORTED_KINDS)}",
                    "kind",
                )
            )
    values = _Values(manifests, issues)
    workloads = [
        _Workload(m, values, issues, strict).build() for m in manifests if m.kind in WORKLOAD_KINDS
    ]
    for manifest in manifests:
        if manifest.kind == "Service":
            _Service(manifest, workloads, issues).apply()
    namespaces = [_namespace(m) for m in manifests if m.kind == "Namespace"]
    if strict:
        issues += _strict_issues(workloads, manifests)
    if issues:
        raise SpecError(issues)
    return Translated(workloads, values.stored, [n for n in namespaces if n is not None])


class _Values:
    """The ConfigMaps and Secrets of the file, by namespace and name."""

    def __init__(self, manifests: list[Manifest], issues: list[Issue]) -> None:
        self.configmaps: dict[tuple[str, str], dict[str, bytes]] = {}
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        self.stored: list[StoredSecret] = []
        for manifest in manifests:
            key = (manifest.namespace, manifest.name)
            data = manifest.data
            if manifest.kind == "ConfigMap":
                values = {k: str(v).encode() for k, v in (data.get("data") or {}).items()}
                values.update(_decoded(manifest, "binaryData", issues))
                self.configmaps[key] = values
                name = configmap_secret_name(manifest.name)
                self.stored.append(StoredSecret(key[0], name, values, manifest.subject))
            elif manifest.kind == "Secret":
                values = _decoded(manifest, "data", issues)
                values.update(
                    {k: str(v).encode() for k, v in (data.get("stringData") or {}).items()}
                )
                self.secrets[key] = values
                self.stored.append(StoredSecret(key[0], manifest.name, values, manifest.subject))


def _decoded(manifest: Manifest, section: str, issues: list[Issue]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in (manifest.data.get(section) or {}).items():
        try:
            out[key] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            issues.append(
                manifest.issue("expected base64 (as Kubernetes stores it)", f"{section}.{key}")
            )
    return out


class _Workload:
    def __init__(
        self, manifest: Manifest, values: _Values, issues: list[Issue], strict: bool
    ) -> None:
        self.m = manifest
        self.values = values
        self.issues = issues
        self.strict = strict
        self.namespace = manifest.namespace
        self.spec: dict[str, Any] = {}
        self.overrides: dict[str, Rule] = {}
        kind = manifest.kind
        self.pod_path = "spec" if kind == "Pod" else "spec.template.spec"
        self.pod: dict[str, Any] = (
            manifest.data.get("spec") or {}
            if kind == "Pod"
            else ((manifest.data.get("spec") or {}).get("template") or {}).get("spec") or {}
        )

    def error(self, path: str, message: str, hint: str | None = None) -> None:
        self.issues.append(self.m.issue(message, path, hint))

    def override(self, path: str, verdict: Verdict, reason: str, field: str | None = None) -> None:
        self.overrides[path] = Rule(verdict, reason, field)

    def build(self) -> KubeWorkload:
        data = self.m.data
        metadata = data.get("metadata") or {}
        spec = data.get("spec") or {}
        if self.m.kind == "Pod":
            labels = dict(metadata.get("labels") or {})
            self.spec["replicas"] = 1
        else:
            template_meta = (spec.get("template") or {}).get("metadata") or {}
            labels = {**(metadata.get("labels") or {}), **(template_meta.get("labels") or {})}
            self.spec["replicas"] = spec.get("replicas", 1)
        self._pod()
        if self.m.kind == "StatefulSet":
            self._claim_templates(spec.get("volumeClaimTemplates") or [])
        self.spec["portability"] = "strict" if self.strict else "lenient"
        document_meta: dict[str, Any] = {"name": self.m.name, "namespace": self.namespace}
        if labels:
            document_meta["labels"] = {str(k): str(v) for k, v in labels.items()}
        document = {
            "apiVersion": "portway.dev/v1",
            "kind": "Workload",
            "metadata": document_meta,
            "spec": self.spec,
        }
        out = KubeWorkload(self.m.kind, self.m.name, self.m.file, self.m.index, document)
        out.pod_labels = {str(k): str(v) for k, v in labels.items()}
        out.keys = _verdicts(self.m, WORKLOAD_RULES, self.overrides)
        return out

    # --- pod --------------------------------------------------------------

    def _pod(self) -> None:
        pod, path = self.pod, self.pod_path
        self._restart(pod.get("restartPolicy"), _join(path, "restartPolicy"))
        self._runtime_class(pod.get("runtimeClassName"), _join(path, "runtimeClassName"))
        containers = pod.get("containers") or []
        if len(containers) != 1:
            self.error(
                _join(path, "containers"),
                f"portway runs one container per replica; this pod has {len(containers)}",
                "make each container a workload of its own (they find each other by name)",
            )
            return
        container = containers[0]
        cpath = _join(_join(path, "containers"), 0)
        self.spec["image"] = container.get("image")
        for key, target in (("command", "command"), ("args", "args")):
            if container.get(key) is not None:
                self.spec[target] = [str(a) for a in container[key]]
        self._security(pod, container, path, cpath)
        self._env(container, cpath)
        self._ports(container, cpath)
        self._resources(container.get("resources") or {})
        self._probes(container, cpath)
        self._mounts(container, cpath)
        if pod.get("nodeSelector"):
            self.spec["placement"] = {"targetSelector": dict(pod["nodeSelector"])}

    def _restart(self, policy: str | None, path: str) -> None:
        if self.m.kind != "Pod" and policy not in (None, "Always"):
            self.error(path, f"a {self.m.kind} restarts its pods always; expected Always")
        names = {"Always": "always", "OnFailure": "on-failure", "Never": "never"}
        self.spec["restart"] = {"policy": names.get(policy or "Always", "always")}

    def _runtime_class(self, name: str | None, path: str) -> None:
        if name is None:
            return
        tier = _RUNTIME_TIERS.get(name) or (Isolation.MICROVM if name.startswith("kata") else None)
        if tier is None:
            known = ", ".join(f"{n} ({t.value})" for n, t in sorted(_RUNTIME_TIERS.items()))
            self.error(
                path,
                f"runtimeClassName {name!r} names no isolation tier portway knows",
                f"use one of {known}, or leave it out for the standard tier",
            )
            return
        self.spec["isolation"] = tier.value

    def _security(
        self, pod: dict[str, Any], container: dict[str, Any], path: str, cpath: str
    ) -> None:
        pod_context = pod.get("securityContext") or {}
        context = {**pod_context, **(container.get("securityContext") or {})}
        security: dict[str, Any] = {}
        uid, gid = context.get("runAsUser"), context.get("runAsGroup")
        if uid is not None:
            security["user"] = f"{uid}:{gid}" if gid is not None else str(uid)
        elif gid is not None:
            where = "securityContext.runAsGroup"
            for base in (cpath, path):
                self.override(
                    f"{base}.{where}", Verdict.DROPPED, "a group needs runAsUser in portway"
                )
        for key, target in (
            ("runAsNonRoot", "runAsNonRoot"),
            ("readOnlyRootFilesystem", "readOnlyRootFilesystem"),
            ("privileged", "privileged"),
        ):
            if context.get(key) is not None:
                security[target] = bool(context[key])
        if context.get("allowPrivilegeEscalation") is False:
            security["noNewPrivileges"] = True
        capabilities = context.get("capabilities") or {}
        if capabilities:
            security["capabilities"] = {
                k: [str(c) for c in capabilities[k]] for k in ("add", "drop") if capabilities.get(k)
            }
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp in ("RuntimeDefault", "Unconfined"):
            security["seccompProfile"] = seccomp
        elif seccomp is not None:
            for base in (cpath, path):
                self.override(
                    f"{base}.securityContext.seccompProfile",
                    Verdict.DROPPED,
                    f"seccomp {seccomp}: portway uses the engine's default filter",
                )
        sysctls = pod_context.get("sysctls") or []
        if sysctls:
            security["sysctls"] = {str(s["name"]): str(s.get("value", "")) for s in sysctls}
        for key, target in (("hostNetwork", "hostNetwork"), ("hostPID", "hostPid"),
                            ("hostIPC", "hostIpc")):  # fmt: skip
            if pod.get(key):
                security[target] = True
        if security:
            self.spec["security"] = security

    def _env(self, container: dict[str, Any], cpath: str) -> None:
        env: dict[str, str] = {}
        secrets: list[dict[str, Any]] = self.spec.setdefault("secrets", [])
        for i, source in enumerate(container.get("envFrom") or []):
            where = _join(_join(cpath, "envFrom"), i)
            prefix = str(source.get("prefix") or "")
            if source.get("configMapRef"):
                found = self._configmap(source["configMapRef"], f"{where}.configMapRef")
                env.update({prefix + k: v.decode() for k, v in (found or {}).items()})
            elif source.get("secretRef"):
                name = source["secretRef"].get("name")
                found = self._secret(source["secretRef"], f"{where}.secretRef")
                for key in found or {}:
                    secrets.append({"secret": name, "key": key, "env": prefix + key})
        for i, var in enumerate(container.get("env") or []):
            where = _join(_join(cpath, "env"), i)
            name = str(var["name"])
            source = var.get("valueFrom")
            if source is None:
                env[name] = str(var.get("value", ""))
            elif source.get("secretKeyRef"):
                ref = source["secretKeyRef"]
                field = f"spec.secrets[{len(secrets)}]"
                secrets.append({"secret": ref.get("name"), "key": ref.get("key"), "env": name})
                self.override(f"{where}.valueFrom", Verdict.HONORED, f"becomes {field}", field)
            elif source.get("configMapKeyRef"):
                ref = source["configMapKeyRef"]
                found = self._configmap(ref, f"{where}.valueFrom.configMapKeyRef")
                if found is not None and ref.get("key") in found:
                    env[name] = found[ref["key"]].decode()
                elif found is not None and not ref.get("optional"):
                    self.error(
                        f"{where}.valueFrom.configMapKeyRef.key",
                        f"ConfigMap {ref.get('name')} has no key {ref.get('key')!r}",
                    )
                self.override(
                    f"{where}.valueFrom",
                    Verdict.EMULATED,
                    "the ConfigMap's value is copied into spec.env at load time",
                )
            else:
                self.override(
                    f"{where}.valueFrom",
                    Verdict.DROPPED,
                    "only secretKeyRef and configMapKeyRef have a portway equivalent",
                )
        if env:
            self.spec["env"] = env
        if not secrets:
            del self.spec["secrets"]

    def _configmap(self, ref: Mapping[str, Any], where: str) -> dict[str, bytes] | None:
        found = self.values.configmaps.get((self.namespace, str(ref.get("name"))))
        if found is None and not ref.get("optional"):
            self.error(
                where,
                f"ConfigMap {ref.get('name')} is not in this file",
                "portway reads ConfigMap values at load time: add the ConfigMap to the file",
            )
        return found

    def _secret(self, ref: Mapping[str, Any], where: str) -> dict[str, bytes] | None:
        name = ref.get("name") or ref.get("secretName")
        found = self.values.secrets.get((self.namespace, str(name)))
        if found is None and not ref.get("optional"):
            self.error(
                where,
                f"Secret {name} is not in this file, so its keys are unknown",
                "add the Secret to the file, or list the keys under items",
            )
        return found

    def _ports(self, container: dict[str, Any], cpath: str) -> None:
        ports = []
        for i, port in enumerate(container.get("ports") or []):
            protocol = str(port.get("protocol", "TCP"))
            if protocol not in ("TCP", "UDP"):
                self.error(
                    _join(_join(cpath, "ports"), i) + ".protocol",
                    f"protocol {protocol}: portway publishes TCP and UDP ports",
                )
                continue
            item: dict[str, Any] = {"containerPort": port["containerPort"]}
            if port.get("name"):
                item["name"] = port["name"]
            if protocol == "UDP":
                item["protocol"] = "udp"
            if port.get("hostPort"):
                item["hostPort"] = port["hostPort"]
            if port.get("hostIP"):
                item["hostIp"] = port["hostIP"]
            ports.append(item)
        if ports:
            self.spec["ports"] = ports

    def _resources(self, resources: Mapping[str, Any]) -> None:
        limits = resources.get("limits") or {}
        out = {k: limits[k] for k in ("cpu", "memory") if limits.get(k) is not None}
        if out:
            self.spec["resources"] = out

    def _probes(self, container: dict[str, Any], cpath: str) -> None:
        probes: dict[str, Any] = {}
        for key, target in (("livenessProbe", "liveness"), ("readinessProbe", "readiness")):
            probe = container.get(key)
            if probe:
                found = self._probe(probe, _join(cpath, key), container)
                if found is not None:
                    probes[target] = found
        if probes:
            self.spec["probes"] = probes

    def _probe_port(self, port: Any, container: dict[str, Any], where: str) -> int | None:
        if isinstance(port, int):
            number = port
        else:
            named = [p for p in container.get("ports") or [] if p.get("name") == port]
            if not named:
                self.error(where, f"no container port is named {port!r}")
                return None
            number = int(named[0]["containerPort"])
        declared = self.spec.setdefault("ports", [])
        if not any(p["containerPort"] == number and "protocol" not in p for p in declared):
            # portway probes through the published port: it must be declared
            declared.append({"containerPort": number})
        return number

    def _probe(self, probe: dict[str, Any], path: str, container: dict[str, Any]) -> Any:
        out: dict[str, Any] = {}
        for key in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds",
                    "failureThreshold", "successThreshold"):  # fmt: skip
            if probe.get(key) is not None:
                out[key] = probe[key]
        if probe.get("exec"):
            out["exec"] = {"command": [str(c) for c in probe["exec"].get("command") or []]}
        elif probe.get("httpGet"):
            http = probe["httpGet"]
            port = self._probe_port(http.get("port"), container, f"{path}.httpGet.port")
            if port is None:
                return None
            if str(http.get("scheme", "HTTP")).upper() == "HTTPS":
                out["tcp"] = {"port": port}
                self.override(
                    f"{path}.httpGet.scheme",
                    Verdict.EMULATED,
                    "HTTPS: portway's HTTP probes speak plain HTTP, so the port is probed by TCP",
                )
            else:
                out["http"] = {"port": port, "path": str(http.get("path") or "/")}
        elif probe.get("tcpSocket"):
            port = self._probe_port(probe["tcpSocket"].get("port"), container, f"{path}.tcpSocket")
            if port is None:
                return None
            out["tcp"] = {"port": port}
        else:
            self.override(path, Verdict.DROPPED, "only exec, httpGet and tcpSocket probes")
            return None
        return out

    # --- volumes ----------------------------------------------------------

    def _mounts(self, container: dict[str, Any], cpath: str) -> None:
        volumes_by_name = {v["name"]: (i, v) for i, v in enumerate(self.pod.get("volumes") or [])}
        claims = {
            (t.get("metadata") or {}).get("name")
            for t in ((self.m.data.get("spec") or {}).get("volumeClaimTemplates") or [])
        }
        volumes: list[dict[str, Any]] = []
        secrets: list[dict[str, Any]] = self.spec.setdefault("secrets", [])
        used: set[str] = set()
        for i, mount in enumerate(container.get("volumeMounts") or []):
            where = _join(_join(cpath, "volumeMounts"), i)
            name = str(mount["name"])
            base: dict[str, Any] = {"mountPath": str(mount["mountPath"])}
            if mount.get("readOnly"):
                base["readOnly"] = True
            sub_path = mount.get("subPath")
            if name in claims and self.m.kind == "StatefulSet":
                volumes.append({"name": name, "type": "named", "perReplica": True, **base})
                self._mounted(where, f"spec.volumes[{len(volumes) - 1}]")
                continue
            if name not in volumes_by_name:
                self.error(f"{where}.name", f"no volume of the pod is named {name!r}")
                continue
            index, volume = volumes_by_name[name]
            vpath = _join(_join(self.pod_path, "volumes"), index)
            if volume.get("secret") or volume.get("configMap"):
                refs = self._file_refs(volume, vpath, base["mountPath"], sub_path, where)
                first = len(secrets)
                secrets += refs
                self._mounted(where, f"spec.secrets[{first}]" if len(refs) == 1 else "spec.secrets")
                continue
            if sub_path:
                self.override(f"{where}.subPath", Verdict.DROPPED, "the whole volume is mounted")
            unique = name if name not in used else f"{name}-{i}"
            used.add(unique)
            entry = self._volume(volume, vpath, unique, base)
            if entry is not None:
                volumes.append(entry)
                self._mounted(where, f"spec.volumes[{len(volumes) - 1}]")
        if volumes:
            self.spec["volumes"] = volumes
        if not secrets:
            del self.spec["secrets"]

    def _mounted(self, where: str, field: str) -> None:
        """A mount takes the verdict of the one field it became."""
        self.override(where, Verdict.HONORED, f"becomes {field}", field)

    def _volume(
        self, volume: dict[str, Any], vpath: str, name: str, base: dict[str, Any]
    ) -> dict[str, Any] | None:
        if "emptyDir" in volume:
            empty = volume.get("emptyDir") or {}
            entry = {"name": name, "type": "tmpfs", **base}
            if empty.get("sizeLimit") is not None:
                entry["sizeLimit"] = empty["sizeLimit"]
            if empty.get("medium") == "Memory":
                self.override(vpath, Verdict.HONORED, "becomes a tmpfs volume", "spec.volumes")
            else:
                reason = "a tmpfs volume: in memory, counted against the memory limit"
                self.override(vpath, Verdict.EMULATED, reason)
            return entry
        if volume.get("hostPath"):
            self.override(vpath, Verdict.HONORED, "becomes a bind volume", "spec.volumes")
            if volume["hostPath"].get("type"):
                self.override(f"{vpath}.hostPath.type", Verdict.DROPPED, "the path is not checked")
            return {"name": name, "type": "bind", "source": volume["hostPath"]["path"], **base}
        if volume.get("persistentVolumeClaim"):
            self.override(
                vpath,
                Verdict.EMULATED,
                "a named volume of the workload; the claim's class and size are not used",
            )
            return {"name": name, "type": "named", **base}
        kinds = sorted(k for k in volume if k != "name")
        self.override(vpath, Verdict.DROPPED, f"{', '.join(kinds)} volumes have no portway kind")
        return None

    def _file_refs(
        self,
        volume: dict[str, Any],
        vpath: str,
        mount_path: str,
        sub_path: str | None,
        where: str,
    ) -> list[dict[str, Any]]:
        """A secret or configMap volume as one secret file per key."""
        is_secret = bool(volume.get("secret"))
        source = volume.get("secret") or volume.get("configMap") or {}
        name = str(source.get("secretName") if is_secret else source.get("name"))
        secret_name = name if is_secret else configmap_secret_name(name)
        mode = source.get("defaultMode", 0o644)
        items = source.get("items")
        if items:
            files = [
                (str(i["key"]), str(i.get("path", i["key"])), i.get("mode", mode)) for i in items
            ]
        else:
            found = (
                self._secret(source, f"{vpath}.secret")
                if is_secret
                else self._configmap(source, f"{vpath}.configMap")
            )
            files = [(key, key, mode) for key in sorted(found or {})]
        self.override(
            vpath,
            Verdict.EMULATED if not is_secret else Verdict.HONORED,
            f"each key becomes a read-only file on tmpfs from portway secret {secret_name!r}",
            "spec.secrets",
        )
        refs = []
        for key, path, file_mode in files:
            if sub_path is not None and sub_path != path:
                continue
            target = mount_path if sub_path is not None else posixpath.join(mount_path, path)
            refs.append({"secret": secret_name, "key": key, "mountPath": target, "mode": file_mode})
        if sub_path is not None and not refs:
            self.error(f"{where}.subPath", f"subPath {sub_path!r} is no key of {name}")
        return refs

    def _claim_templates(self, templates: list[dict[str, Any]]) -> None:
        mounted = {v["name"] for v in self.spec.get("volumes", [])}
        for i, template in enumerate(templates):
            name = (template.get("metadata") or {}).get("name")
            if name not in mounted:
                self.override(
                    f"spec.volumeClaimTemplates[{i}]",
                    Verdict.DROPPED,
                    "no container mounts it",
                )


def _verdicts(
    manifest: Manifest, rules: dict[str, Rule], overrides: Mapping[str, Rule], prefix: str = ""
) -> list[KeyVerdict]:
    """Every key path of the object with its rule (an override wins, also
    for the keys under it)."""
    found: list[KeyVerdict] = []

    def rule_of(path: str) -> Rule:
        probe = path
        while probe:
            if probe in overrides:
                return overrides[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            if cut <= 0:
                break
            probe = probe[:cut]
        return rule_for(rules, canonical(manifest.kind, path))

    def walk(value: Any, path: str) -> None:
        if path:
            found.append(KeyVerdict(prefix + path, manifest.line(path), rule_of(path)))
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, _join(path, str(key)))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict | list):
                    walk(item, _join(path, i))

    walk(manifest.data, "")
    return found


class _Service:
    """A Service folded into the workloads it selects."""

    def __init__(
        self, manifest: Manifest, workloads: list[KubeWorkload], issues: list[Issue]
    ) -> None:
        self.m = manifest
        self.workloads = workloads
        self.issues = issues
        self.overrides: dict[str, Rule] = {}

    def apply(self) -> None:
        spec = self.m.data.get("spec") or {}
        selector = spec.get("selector") or {}
        selected = [
            w
            for w in self.workloads
            if w.document["metadata"]["namespace"] == self.m.namespace
            and selector
            and all(w.pod_labels.get(k) == v for k, v in selector.items())
        ]
        if not selected:
            # nothing to attach its verdicts to: a Service alone is refused,
            # so that nothing of the file is silently dropped
            self.issues.append(
                self.m.issue(
                    "this Service selects no Pod, Deployment or StatefulSet of this file",
                    "spec.selector",
                    "portway folds a Service into the workloads it selects",
                )
            )
            return
        for workload in selected:
            self._fold(workload, spec)
        keys = _verdicts(self.m, SERVICE_RULES, self.overrides, prefix=f"({self.m.subject}) ")
        for workload in selected:
            workload.keys += keys

    def _fold(self, workload: KubeWorkload, spec: Mapping[str, Any]) -> None:
        wspec = workload.document["spec"]
        if self.m.name != workload.name:
            self.overrides["metadata.name"] = Rule(
                Verdict.DROPPED,
                f"replicas answer to the workload's name {workload.name!r}, not the "
                f"Service's {self.m.name!r}",
            )
        service_type = str(spec.get("type", "ClusterIP"))
        ports = wspec.setdefault("ports", [])
        for i, sport in enumerate(spec.get("ports") or []):
            where = f"spec.ports[{i}]"
            port = self._target(ports, sport, where)
            if port is None:
                continue
            number = int(sport["port"])
            if service_type == "NodePort" and sport.get("nodePort"):
                port["hostPort"] = int(sport["nodePort"])
                self.overrides[f"{where}.nodePort"] = Rule(
                    Verdict.EMULATED,
                    "becomes hostPort on 127.0.0.1: replica i publishes nodePort + i",
                    "spec.ports",
                )
            if service_type == "LoadBalancer":
                wspec.setdefault("ingress", []).append(
                    {"port": port["name"], "listen": number, "mode": "tcp"}
                )
                self.overrides[f"{where}.port"] = Rule(
                    Verdict.EMULATED,
                    f"portway's load balancer listens on 127.0.0.1:{number}",
                    "spec.ingress",
                )
            elif number != port["containerPort"]:
                self.overrides[f"{where}.port"] = Rule(
                    Verdict.DROPPED,
                    f"clients reach the container port {port['containerPort']} by name, "
                    f"not {number}",
                )
        if service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
            self.overrides["spec.type"] = Rule(Verdict.DROPPED, f"type {service_type}")
        elif service_type == "NodePort":
            self.overrides["spec.type"] = Rule(
                Verdict.EMULATED, "NodePort: each replica publishes the nodePort on 127.0.0.1"
            )
        elif service_type == "LoadBalancer":
            self.overrides["spec.type"] = Rule(
                Verdict.EMULATED, "LoadBalancer: portway's ingress (HAProxy) balances the port"
            )

    def _target(
        self, ports: list[dict[str, Any]], sport: Mapping[str, Any], where: str
    ) -> dict[str, Any] | None:
        """The workload port a Service port sends to, named so the workload
        is a service (answers to its name)."""
        target = sport.get("targetPort", sport["port"])
        protocol = "udp" if sport.get("protocol") == "UDP" else "tcp"
        same_protocol = [p for p in ports if p.get("protocol", "tcp") == protocol]
        if isinstance(target, str) and not target.isdigit():
            found = next((p for p in same_protocol if p.get("name") == target), None)
            if found is None:
                self.issues.append(
                    self.m.issue(f"no container port is named {target!r}", f"{where}.targetPort")
                )
            return found
        number = int(target)
        found = next((p for p in same_protocol if p["containerPort"] == number), None)
        if found is None:
            found = {"containerPort": number}
            if protocol == "udp":
                found["protocol"] = "udp"
            ports.append(found)
        if not found.get("name"):
            name = sport.get("name")
            taken = {p.get("name") for p in ports}
            found["name"] = name if name and name not in taken else f"port-{number}"
        return found


def _namespace(manifest: Manifest) -> dict[str, Any] | None:
    """A Namespace with a Pod Security label as a portway namespace policy."""
    labels = (manifest.data.get("metadata") or {}).get("labels") or {}
    level = labels.get(_PSA_LABEL)
    if level is None:
        return None
    return {
        "apiVersion": "portway.dev/v1",
        "kind": "Namespace",
        "metadata": {"name": manifest.name},
        "spec": {"podSecurity": level},
    }


def _strict_issues(workloads: list[KubeWorkload], manifests: list[Manifest]) -> list[Issue]:
    """Strict mode refuses every key portway would drop, all at once."""
    by_index = {m.index: m for m in manifests}
    issues = []
    for workload in workloads:
        manifest = by_index[workload.index]
        for key in workload.keys:
            if key.rule.verdict is Verdict.DROPPED:
                own = not key.path.startswith("(")  # else a folded Service's key
                issues.append(
                    Issue(
                        f"strict: {key.rule.reason}; the key would be dropped",
                        file=manifest.file,
                        document=manifest.index if own else None,
                        path=key.path,
                        line=key.line if own else None,
                        subject=workload.subject if own else None,
                    )
                )
    return issues
