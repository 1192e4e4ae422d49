"""containerd driver: talks to containerd's gRPC API directly (no CRI, no nerdctl).

The generated stubs of the PyPI ``containerd`` package predate protobuf 4 and
load only with protobuf's pure-Python implementation, so it is selected here,
before anything imports protobuf. The cost: the choice is per process (every
protobuf user in the process gets the pure-Python implementation, which parses
messages several times slower; containerd's messages here are small and few),
and it cannot be made after protobuf was first imported with another
implementation (importing then fails: see ``_api``).
"""

from __future__ import annotations

import os

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

from portway.drivers.containerd.driver import ContainerdDriver

__all__ = ["ContainerdDriver"]
