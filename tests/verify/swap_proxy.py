"""A loopback proxy that forwards to one real llama.cpp server and, after N chat requests, silently to another.

All servers of the verification suite serve under the same alias, so the name the client sees never changes: the
"routing layer that quietly sends requests to another model" of the Reflection 70B episode. Built on
:class:`helpers.fault_proxy.FaultProxy` (its lifecycle, request parsing and forwarding); no faults are injected, only
:meth:`upstream_for` changes. A project-written proxy because no real server does this on purpose.
"""

from __future__ import annotations

from helpers.fault_proxy import FaultPlan, FaultProxy

CHAT_PATH = "/v1/chat/completions"


class SwapProxy(FaultProxy):
    def __init__(self, first_port: int, then_port: int, switch_after: int | None = None) -> None:
        super().__init__(first_port, FaultPlan())
        self.first_port = first_port
        self.then_port = then_port
        self.switch_after = switch_after
        self.chat_requests = 0
        self.switched_at: int | None = None  # the number of chat requests forwarded before the switch

    def reset(self, switch_after: int | None) -> None:
        """Back to the first server; switch after ``switch_after`` more chat requests (None: never)."""
        self.switch_after = switch_after
        self.chat_requests = 0
        self.switched_at = None

    def upstream_for(self, path: str) -> int:
        if not path.startswith(CHAT_PATH):
            return self.first_port
        port = self.first_port
        if self.switch_after is not None and self.chat_requests >= self.switch_after:
            port = self.then_port
            if self.switched_at is None:
                self.switched_at = self.chat_requests
        self.chat_requests += 1
        return port
