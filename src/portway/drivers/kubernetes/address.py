"""A Kubernetes target's address: which kubeconfig, which context, which namespace.

``kubernetes://CONTEXT?kubeconfig=PATH&namespace=NS``. Every part is optional:
no context means the kubeconfig's current context, no kubeconfig means
``$KUBECONFIG`` (else ``~/.kube/config``), no namespace means the context's
namespace (else ``default``). The context is percent-encoded because real
context names hold ``@`` and ``:`` (``kubernetes-admin@kubernetes``,
``arn:aws:eks:...``), which a URL's host part cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlencode, urlparse

from portway.errors import InputError

SCHEME = "kubernetes"
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KNOWN_KEYS = ("kubeconfig", "namespace")


@dataclass(frozen=True)
class KubeAddress:
    context: str = ""  # "" = the kubeconfig's current context
    kubeconfig: str = ""  # "" = $KUBECONFIG, else ~/.kube/config
    namespace: str = ""  # "" = the context's namespace, else "default"

    def __str__(self) -> str:
        return format_address(self.context, self.kubeconfig, self.namespace)


def check_namespace(namespace: str, flag: str = "--namespace") -> None:
    if namespace and (len(namespace) > 63 or not _NAMESPACE_RE.match(namespace)):
        raise InputError(
            f"{flag} {namespace!r}: not a Kubernetes namespace name; use at most 63 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit"
        )


def format_address(context: str = "", kubeconfig: str = "", namespace: str = "") -> str:
    """The target address for ``portway target add --driver kubernetes``'s flags."""
    check_namespace(namespace)
    query = urlencode(
        [(k, v) for k, v in (("kubeconfig", kubeconfig), ("namespace", namespace)) if v]
    )
    return f"{SCHEME}://{quote(context, safe='')}" + (f"?{query}" if query else "")


def parse_address(address: str) -> KubeAddress:
    """Parse a target address; an ``InputError`` names what is wrong."""
    parsed = urlparse(address)
    if parsed.scheme != SCHEME:
        raise InputError(
            f"address {address!r}: expected {SCHEME}://CONTEXT?kubeconfig=PATH&namespace=NS"
        )
    if parsed.path not in ("", "/"):
        raise InputError(
            f"address {address!r}: unexpected path {parsed.path!r}; percent-encode '/' in the "
            "context name (portway target add --context does)"
        )
    query = parse_qs(parsed.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_KNOWN_KEYS))
    if unknown:
        raise InputError(
            f"address {address!r}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(_KNOWN_KEYS)}"
        )
    for key, values in query.items():
        if len(values) > 1:
            raise InputError(f"address {address!r}: {key} given {len(values)} times")
    namespace = query.get("namespace", [""])[0]
    check_namespace(namespace, f"address {address!r}: namespace")
    return KubeAddress(
        context=unquote(parsed.netloc),
        kubeconfig=query.get("kubeconfig", [""])[0],
        namespace=namespace,
    )
