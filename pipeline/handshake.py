"""Is there a Ray cluster at an address? Asked in seconds, before anything is written.

A TCP connection alone proves little: a server that accepts and then never answers made
ray.init wait 280 s and more. Ray's GCS and its client server (ray://) both speak gRPC, which is
HTTP/2, and an HTTP/2 server answers a client's connection preface with a SETTINGS frame at once
(RFC 9113, 3.4). That exchange is the handshake asked for here: no gRPC library is needed, and
nothing is sent that a Ray cluster would act on.
"""
from __future__ import annotations

import os
import socket
import struct
import time

HANDSHAKE_SECONDS = 5.0
# The client connection preface, then an empty SETTINGS frame (length 0, type 4, flags 0, stream 0).
CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0)
FRAME_HEADER_BYTES = 9
SETTINGS_FRAME = 4


class NoCluster(Exception):
    """Nothing at the address answers as a Ray cluster; the message says what happened."""


def _uses_tls() -> bool:
    # A cluster with RAY_USE_TLS answers the preface with a TLS alert, not SETTINGS: any answer will do.
    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


def probe(host: str, port: int, timeout: float = HANDSHAKE_SECONDS) -> None:
    """Return when host:port answers an HTTP/2 handshake within timeout; else raise NoCluster."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(CLIENT_PREFACE)
            answer = b""
            while len(answer) < FRAME_HEADER_BYTES:
                connection.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = connection.recv(FRAME_HEADER_BYTES - len(answer))
                if not chunk:
                    break
                answer += chunk
    except socket.timeout:
        raise NoCluster(f"it accepted the connection but did not answer a gRPC handshake in {timeout:.0f} s"
                        " (is this a Ray GCS or ray:// port?)") from None
    except OSError as e:
        raise NoCluster(e.strerror or str(e)) from None
    if not answer:
        raise NoCluster("it closed the connection without answering a gRPC handshake")
    if _uses_tls():
        return
    if len(answer) < FRAME_HEADER_BYTES or answer[3] != SETTINGS_FRAME:
        raise NoCluster("it answered, but not as a gRPC server (is this a Ray GCS or ray:// port?)")
