"""``portway target add --driver kubernetes --context CTX [--kubeconfig PATH]
[--namespace NS]``: the flags become the target's address
(``kubernetes://CTX?kubeconfig=PATH&namespace=NS``, see
``portway.drivers.kubernetes.address``), so a target stays one driver and one
address, as every other target is, locally and through a server."""

from __future__ import annotations

from portway.drivers.kubernetes.address import SCHEME, format_address, parse_address
from portway.errors import InputError


def kubernetes_address(
    address: str | None,
    driver: str | None,
    context: str | None,
    kubeconfig: str | None,
    namespace: str | None,
) -> str | None:
    """The address to register: ``address`` unchanged when no Kubernetes flag
    is given (and the driver is not kubernetes); the flags' address otherwise."""
    if address is not None and address.startswith(f"{SCHEME}:"):
        parse_address(address)  # refuse a malformed address now, not at the first health check
    flags = {"--context": context, "--kubeconfig": kubeconfig, "--namespace": namespace}
    given = [flag for flag, value in flags.items() if value is not None]
    if not given and driver != SCHEME:
        return address
    if driver not in (None, SCHEME):
        raise InputError(
            f"{', '.join(given)} apply to --driver {SCHEME} only, not --driver {driver}"
        )
    if address is not None:
        if given:
            raise InputError(
                f"give either --address or {', '.join(given)}, not both "
                f"(the flags make the address {SCHEME}://CONTEXT?kubeconfig=PATH&namespace=NS)"
            )
        return address
    for flag, value in flags.items():
        if value is not None and not value.strip():
            raise InputError(f"{flag}: empty; leave the flag out for the default")
    return format_address(context or "", kubeconfig or "", namespace or "")
