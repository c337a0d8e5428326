"""What an endpoint URL points at. One place for "is this loopback?", which drill mode, the
sandbox and recorded incident targets all rely on (a drill never talks to anything else).

Must not touch: boto3, Slack, flows, Prefect (pure: ``flows.engine.targets`` imports it).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(url: str | None) -> bool:
    """True if ``url`` points at this machine (127.0.0.0/8, ::1 or ``localhost``)."""
    if not url:
        return False
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
