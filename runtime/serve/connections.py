"""Connection-level limits uvicorn lacks: a deadline for a request's headers.

uvicorn closes a kept-alive connection that stays idle past `timeout_keep_alive`, but
waits forever for the headers of a request: a client that connects and sends nothing,
or trickles a header line a second, holds its connection (and a file descriptor) for
good. This protocol closes a connection whose request headers are not complete within
`header_timeout_s` of its opening, or of the first byte of its next request."""

from __future__ import annotations


def guarded_h11_protocol(header_timeout_s: float):
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_request():
                self._disarm()
            else:
                self._arm()  # the first bytes of a request whose headers are not complete yet

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._in_request():  # a pipelined request started at once
                self._disarm()
            # otherwise the connection idles: uvicorn's keep-alive timeout governs it

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _in_request(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _arm(self) -> None:
            if self._header_timer is None and not self.transport.is_closing():
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self._in_request() and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol
