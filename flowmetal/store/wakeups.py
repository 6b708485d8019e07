"""Wake-ups across the processes of one host sharing an LMDB store.

Every process that waits for work binds a UNIX datagram socket in the store's ``wake``
directory; a process whose commit made work (a task runnable, a timer armed, an outbox
entry) sends one byte to each of them.  A socket whose process is gone refuses the byte
and is removed.  A wake-up is only a hint: waiters also wake on their timeout, so one
that is lost (a full socket buffer) costs latency, never correctness.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket


class Wakeups:
    """The wake-up sockets of the store directory ``path``."""

    def __init__(self, path: str):
        self.dir = os.path.join(path, "wake")
        self._sock: socket.socket | None = None
        self._name = ""
        self._pid = 0

    def _own(self) -> socket.socket | None:
        if self._sock is not None and self._pid == os.getpid():
            return self._sock
        import socket  # (here: a command that never waits needs none)

        try:
            os.makedirs(self.dir, exist_ok=True)
            name = f"{os.getpid()}-{os.urandom(4).hex()}.sock"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(os.path.join(self.dir, name))
            sock.setblocking(False)
        except OSError:
            return None  # a read-only store, a path too long: waiting is sleeping
        self._sock, self._name, self._pid = sock, name, os.getpid()
        return sock

    def wait(self, timeout: float) -> None:
        """Return when another process wakes this one, or after ``timeout`` seconds."""
        sock = self._own()
        if sock is None:
            time.sleep(max(0.0, timeout))
            return
        # poll, not select: a process with a thousand files open has descriptors past
        # select's FD_SETSIZE.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        ready = poller.poll(max(0.0, timeout) * 1000)
        with contextlib.suppress(OSError):  # drained: the socket would block
            while ready and sock.recv(64):
                continue

    def wake(self) -> None:
        """Wake every other waiting process."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        if not names:
            return
        import socket

        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        try:
            for name in names:
                if name == self._name and self._pid == os.getpid():
                    continue
                path = os.path.join(self.dir, name)
                try:
                    sender.sendto(b"!", path)
                except OSError as exc:
                    if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                        with contextlib.suppress(OSError):
                            os.unlink(path)  # its process is gone
        finally:
            sender.close()

    def close(self) -> None:
        """Stop waiting here: remove this process's socket."""
        if self._sock is not None and self._pid == os.getpid():
            self._sock.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.dir, self._name))
        self._sock = None
