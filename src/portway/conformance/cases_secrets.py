"""Secrets: a value handed to the driver arrives as a read-only file on
tmpfs with the asked mode, and leaves the host when the replica does.

The value is a fresh random token, so a pass cannot come from an old file.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from portway.capabilities.vocabulary import Feature
from portway.drivers.secret_files import Scope, SecretFile, host_dir

from .case import Context, case
from .failures import expect

MOUNT_PATH = "/run/secrets/token"


@case(
    "secrets.files_tmpfs",
    "a secret file is on tmpfs at its mountPath, mode 0400, read-only, with the exact "
    "value, and gone from the host once the replica is destroyed",
    features=(Feature.SECRETS_FILES,),
)
def files_tmpfs(ctx: Context) -> None:
    token = uuid.uuid4().hex
    script = (
        f"grep ' {MOUNT_PATH} ' /proc/mounts; "
        f"grep -q ' {MOUNT_PATH} tmpfs ' /proc/mounts || exit 2; "
        f'[ "$(stat -c %a {MOUNT_PATH})" = 400 ] || {{ stat -c %a {MOUNT_PATH}; exit 3; }}; '
        f'[ "$(cat {MOUNT_PATH})" = {token} ] || exit 4; '
        f"echo x 2>/dev/null > {MOUNT_PATH} && exit 5; exit 0"
    )
    spec = {
        "command": ["sh", "-c", script],
        "secrets": [{"secret": "s", "key": "token", "mountPath": MOUNT_PATH}],
    }
    request = replace(
        ctx.request(spec), secret_files=(SecretFile(MOUNT_PATH, token.encode(), 0o400),)
    )
    handle = ctx.driver.create(request)
    ctx.driver.start(handle)
    status = ctx.wait_exited(handle)
    expect(
        status.exit_code == 0,
        "secret file (exit 2: not on tmpfs; 3: wrong mode; 4: wrong value; 5: writable): "
        f"got exit {status.exit_code}{ctx.quote_output(ctx.output(handle))}",
    )
    files = host_dir(Scope(ctx.driver.name, ctx.driver.target), handle.name)
    ctx.driver.destroy(handle)
    expect(not files.exists(), f"{files} is still on the host after destroy")
