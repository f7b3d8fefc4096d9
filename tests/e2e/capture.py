"""Every TCP byte on the loopback interface, as tcpdump would see it, grouped by flow.

An AF_PACKET socket on `lo` (root, inside the suite's network namespace) receives each frame
once as outgoing and once as incoming; only the incoming copy is kept. Payloads are joined per
direction of each connection, so a secret split across segments is still found.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections import defaultdict

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_STATISTICS, SO_RCVBUFFORCE = 263, 6, 33
IPV4, IPV6, TCP = 0x0800, 0x86DD, 6

Flow = tuple[int, int]
"""(source port, destination port): every server here is on a loopback address."""


def tcp_payload(frame: bytes) -> tuple[Flow, bytes] | None:
    """The ports and payload of an Ethernet frame carrying TCP over IPv4 or IPv6."""
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    offset = 14
    if ethertype == IPV4:
        header = (frame[offset] & 0x0F) * 4
        if frame[offset + 9] != TCP:
            return None
        (total,) = struct.unpack_from("!H", frame, offset + 2)
        end, offset = offset + total, offset + header
    elif ethertype == IPV6:
        if frame[offset + 6] != TCP:  # loopback traffic carries no extension headers
            return None
        (length,) = struct.unpack_from("!H", frame, offset + 4)
        offset += 40
        end = offset + length
    else:
        return None
    source, destination = struct.unpack_from("!HH", frame, offset)
    data_offset = (frame[offset + 12] >> 4) * 4
    return (source, destination), frame[offset + data_offset : end]


class LoopbackCapture:
    """`with LoopbackCapture() as capture: ...`, then `capture.flows` (and `dropped`, the
    frames the kernel could not queue for us: a capture with drops proves nothing)."""

    def __init__(self) -> None:
        self.flows: dict[Flow, bytearray] = defaultdict(bytearray)
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # Room for bursts while this thread sleeps; drops are counted and must stay zero.
        self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
        self._socket.bind(("lo", 0))
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() or select.select([self._socket], [], [], 0)[0]:
            if not select.select([self._socket], [], [], 0.05)[0]:
                continue
            frame, address = self._socket.recvfrom(256 * 1024)
            if address[2] == PACKET_OUTGOING:
                continue
            parsed = tcp_payload(frame)
            if parsed is not None and parsed[1]:
                self.flows[parsed[0]] += parsed[1]

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        _packets, self.dropped = struct.unpack(
            "II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self._socket.close()

    def carrying(self, secret: bytes) -> set[Flow]:
        """The flows whose bytes contain `secret`."""
        return {flow for flow, data in self.flows.items() if secret in data}
