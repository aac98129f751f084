"""Which Host and Origin headers the service answers: the defence against DNS rebinding
(a web page whose name resolves to 127.0.0.1 reaching a token-less local service) and
against other sites' pages posting to it.

Default: the bound address and localhost (any name when bound to a wildcard address
such as 0.0.0.0, where the names are not known here); `--allowed-host` replaces that.
No CORS headers unless `--cors-origin` names the origins allowed to read answers."""

from __future__ import annotations

from urllib.parse import urlsplit

WILDCARDS = {"0.0.0.0", "::", "[::]", ""}
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
PROBES = {"/healthz", "/readyz"}  # liveness and readiness answer any Host: a probe may use the pod's IP


def host_name(value: str) -> str:
    """'Example.COM:8000' -> 'example.com'; '[::1]:80' -> '[::1]'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostPolicy:
    def __init__(self, bound_host: str, allowed_hosts=(), cors_origins=()):
        self.cors_origins = tuple(o.rstrip("/") for o in cors_origins)
        if allowed_hosts:
            self.allowed = {host_name(h) for h in allowed_hosts}
        elif bound_host.strip() in WILDCARDS:
            self.allowed = None  # any
        else:
            self.allowed = {host_name(bound_host), *LOCAL_NAMES}
            if ":" in bound_host and not bound_host.startswith("["):
                self.allowed.add(f"[{bound_host.lower()}]")

    def describe(self) -> str:
        hosts = "any Host" if self.allowed is None else "Host " + ", ".join(sorted(self.allowed))
        cors = ("CORS for " + ", ".join(self.cors_origins)) if self.cors_origins else "no CORS"
        return f"{hosts}; {cors}"

    def refusal(self, path: str, headers) -> tuple[int, str] | None:
        """(status, why) for a request these headers refuse (400 for its Host, 403 for its
        Origin), or None."""
        if path in PROBES or self.allowed is None:
            return None
        host = headers.get("host")
        if host is not None and host_name(host) not in self.allowed:
            return 400, (f"Host '{host[:100]}' is not served here (allowed: {', '.join(sorted(self.allowed))}; "
                         "--allowed-host)")
        origin = headers.get("origin")
        if origin and origin != "null" and origin.rstrip("/") not in self.cors_origins:
            if host_name(urlsplit(origin).netloc) not in self.allowed:
                return 403, f"Origin '{origin[:100]}' may not use this service (--cors-origin)"
        return None
