"""A store reached through a control plane: ``--store https://HOST:PORT`` (or ``--server
URL``), with ``$FLOWMETAL_TOKEN``.

``RemoteStore`` offers the part of the store protocol that commands which look at tasks
and talk to them need — views (tasks, records, continuations, inboxes, journals,
programs), ``start``, ``send``, ``cancel``, ``deploy`` — each call one request to the
server's ``/api/v1/store`` endpoints, which run the same operations on the server's
store.  So ``flowmetal tasks``, ``show``, ``log``, ``attach``, ``start``, ``send``,
``cancel``, ``deploy`` and ``shipyard`` are the same code whether the store is here or
behind a server (the settings a server shares are only those of shipyards).  Running
tasks needs the store itself: a worker connects to it, never to a server.  Bodies are
CBOR both ways, so records travel as the bytes the store keeps.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import cbor2

from ..runtime.records import Event, Message, RecordError, TaskError, TaskRecord
from .base import NewTask, NotThroughServer, StoreError, StoreUnavailable
from .tables import ALL_TASKS, TaskFilter

PATH = "/api/v1/store"
NO_SUCH_PATH = "this server has no path"  # how server.problems begins a 404 of the router
SWAP_ATTEMPTS = 100  # compare-and-sets an update_setting tries before giving up
TIMEOUT = 30.0
CBOR = "application/cbor"


def _plain(records: dict[str, dict | bytes] | None) -> dict[str, dict]:
    """Program records as the server takes them: each a record, none its CBOR bytes."""
    return {h: cbor2.loads(r) if type(r) is bytes else r for h, r in (records or {}).items()}


def filter_params(where: TaskFilter) -> dict[str, Any]:
    """A task filter as plain data for the wire."""
    return {"status": list(where.status), "program": where.program, "name": where.name,
            "parent": where.parent, "root": where.root, "id_prefix": where.id_prefix,
            "created_after": where.created_after, "created_before": where.created_before}


def filter_of(data: dict) -> TaskFilter:
    """The task filter ``filter_params`` made (TypeError if it is not one)."""
    return TaskFilter(status=tuple(data.get("status") or ()), program=data.get("program"),
                      name=data.get("name"), parent=data.get("parent"),
                      root=data.get("root"), id_prefix=data.get("id_prefix"),
                      created_after=data.get("created_after"),
                      created_before=data.get("created_before"))


class RemoteStore:
    """The store behind the control plane at ``url`` (see the module)."""

    def __init__(self, url: str, token: str | None = None):
        parts = urlsplit(url)
        if not parts.netloc:
            raise StoreError(f"not a server URL: {url}")
        self.location = self.path = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("FLOWMETAL_TOKEN")
        if not self.token:
            raise StoreError(f"the server at {self.location} needs a token: set "
                             "FLOWMETAL_TOKEN (flowmetal token create, on the server)")

    # the wire -----------------------------------------------------------------------

    def call(self, op: str, **args: Any) -> Any:
        """One operation on the server's store: its result, or the error it raised."""
        return asyncio.run(self._call(op, args))

    async def _call(self, op: str, args: dict) -> Any:
        import aiohttp

        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": CBOR,
                   "Accept": CBOR}
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                    session.post(f"{self.location}{PATH}/{op}", data=cbor2.dumps(args),
                                 headers=headers) as resp:
                body = await resp.read()
                status, ctype = resp.status, resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StoreUnavailable(f"the server at {self.location} cannot be reached: "
                                   f"{type(exc).__name__}: {exc}") from None
        if status == 200 and ctype.startswith(CBOR):
            return cbor2.loads(body)["result"]
        detail = _detail(body) or f"HTTP {status}"
        if status in (401, 403):
            raise StoreError(f"the server at {self.location} refused the token: {detail}")
        if status == 404 and not detail.startswith(NO_SUCH_PATH) and \
                ctype.startswith("application/problem+json") or status == 409:
            raise TaskError(detail)
        if status == 404:
            raise StoreError(f"no Flowmetal control plane answers at {self.location} "
                             f"(HTTP 404 for {PATH}/{op}): is that the URL flowmetal serve "
                             "listens on?")
        if status == 503:
            raise StoreUnavailable(f"the server at {self.location}: {detail}")
        raise StoreError(f"the server at {self.location}: {detail}")

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """One JSON request to the control plane (``path`` under ``/api/v1``): its JSON
        answer, or the error the server gave, as ``call`` raises them."""
        return asyncio.run(self._api(method, path, body))

    async def _api(self, method: str, path: str, body: dict | None) -> dict:
        import aiohttp

        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                    session.request(method, f"{self.location}/api/v1{path}", json=body,
                                    headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StoreUnavailable(f"the server at {self.location} cannot be reached: "
                                   f"{type(exc).__name__}: {exc}") from None
        if status < 300:
            return json.loads(raw)
        detail = _detail(raw) or f"HTTP {status}"
        if status in (401, 403):
            raise StoreError(f"the server at {self.location} refused the token: {detail}")
        if status == 503:
            raise StoreUnavailable(f"the server at {self.location}: {detail}")
        raise TaskError(detail)

    # the store protocol's commands --------------------------------------------------

    @contextmanager
    def view(self) -> Iterator[RemoteView]:
        """A view of the server's store (each call reads it anew)."""
        yield RemoteView(self)

    def get(self, task_id: str) -> TaskRecord:
        """The task's record (TaskError if there is none)."""
        rec = RemoteView(self).task(task_id)
        if rec is None:
            raise TaskError(f"no task {task_id}")
        return rec

    def start(self, task: NewTask, programs: dict[str, dict] | None = None,
              names: dict[str, str] | None = None, key: str | None = None,
              fingerprint: str | None = None) -> str:
        """Store a new task (and its programs) on the server; its id."""
        return self.call("start", task=task.record.to_bytes(), state=task.state,
                         logged=task.logged, programs=_plain(programs), names=names or {},
                         key=key, fingerprint=fingerprint)

    def send(self, task_id: str, message: bytes, sender: str | None = None) -> int:
        """Queue an encoded message for the task; its sequence number."""
        return self.call("send", task=task_id, message=message, sender=sender)

    def cancel(self, task_id: str) -> TaskRecord:
        """Ask the task to stop; its record after the request."""
        return TaskRecord.from_bytes(self.call("cancel", task=task_id))

    def put_programs(self, records: dict[str, dict]) -> None:
        """Store program records."""
        self.call("put_programs", programs=_plain(records))

    def deploy(self, name: str, digest: str, records: dict[str, dict] | None = None) -> None:
        """Make ``name`` stand for program ``digest`` (storing ``records`` first)."""
        self.call("deploy", name=name, digest=digest, programs=_plain(records))

    def setting(self, key: str) -> str | None:
        """A store-wide setting of those a server shares (``store_ops.SHARED_SETTINGS``)."""
        return self.call("setting", key=key)

    def set_setting(self, key: str, value: str | None) -> None:
        """Set (None: remove) a shared setting."""
        self.call("set_setting", key=key, value=value)

    def update_setting(self, key: str, change: Callable[[str | None], str | None]
                       ) -> str | None:
        """Replace a shared setting by ``change(old)``, safe against concurrent updates
        (a compare-and-set, repeated while another writer changed it first); the new
        value.  ``change`` may run more than once."""
        old = self.call("setting", key=key)
        for _ in range(SWAP_ATTEMPTS):
            new = change(old)
            got = self.call("swap_setting", key=key, expected=old, value=new)
            if got["swapped"]:
                return new
            old = got["value"]
        raise StoreUnavailable(f"the setting {key!r} at {self.location} kept changing "
                               f"under {SWAP_ATTEMPTS} attempts to update it")

    def close(self) -> None:
        """Nothing to close: every call is a request of its own."""

    def __getattr__(self, name: str) -> Any:
        # Workers, migrations, upgrades and store administration need the store itself.
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotThroughServer(f"{name.replace('_', ' ')} is not done through the server "
                               f"at {self.location}: it needs the store itself",
                               self.location)



class RemoteView:
    """``base.View`` of the server's store."""

    def __init__(self, store: RemoteStore):
        self.store = store
        self.unreadable: dict[str, str] = {}
        self.skipped = 0

    def _record(self, task_id: str, data: bytes | None, problem: str | None
                ) -> TaskRecord | None:
        if problem is not None:
            self.unreadable[task_id] = problem
        from .engine import decode_task

        return decode_task(task_id, data, self.unreadable)

    def task(self, task_id: str) -> TaskRecord | None:
        """The task's record, or None."""
        got = self.store.call("task", task=task_id)
        return self._record(task_id, got["record"], got["unreadable"])

    def tasks(self, where: TaskFilter = ALL_TASKS, after: str = "", limit: int = 100,
              descending: bool = False) -> list[TaskRecord]:
        """Records matching ``where``, in id order after ``after``."""
        got = self.store.call("tasks", where=filter_params(where), after=after,
                              limit=min(limit, 1 << 62), descending=descending)
        self.skipped += got["skipped"]
        out = []
        for data in got["records"]:
            try:
                out.append(TaskRecord.from_bytes(data))
            except RecordError:
                self.skipped += 1
        return out

    def count(self, where: TaskFilter = ALL_TASKS) -> dict[str, int]:
        """How many tasks match, by status."""
        return self.store.call("count", where=filter_params(where))

    def continuation(self, task_id: str) -> bytes | None:
        """The task's encoded continuation."""
        return self.store.call("continuation", task=task_id)

    def inbox(self, task_id: str) -> list[tuple[int, Message]]:
        """The queued messages, oldest first."""
        return [(seq, Message.from_bytes(data))
                for seq, data in self.store.call("inbox", task=task_id)]

    def log(self, task_id: str, after: int = 0) -> Iterator[tuple[int, Event]]:
        """The task's events above ``after``."""
        for seq, data in self.store.call("log", task=task_id, after=after):
            yield seq, Event.from_bytes(data)

    def output(self, task_id: str, after: int = 0) -> Iterator[tuple[int, str]]:
        """The task's output above ``after``."""
        yield from ((seq, text) for seq, text in
                    self.store.call("output", task=task_id, after=after))

    def outbox(self, task_id: str | None = None) -> list[tuple[str, int, Any]]:
        """The task's outbox entries."""
        from ..runtime.records import OutboxEntry

        return [(task, request, OutboxEntry.from_bytes(data)) for task, request, data in
                self.store.call("outbox", task=task_id)]

    def program(self, digest: str) -> dict | None:
        """A program record by hash."""
        return self.store.call("program", digest=digest)

    def program_hashes(self) -> list[str]:
        """The hashes of every stored program."""
        return self.store.call("program_hashes")

    def resolve(self, name: str) -> str | None:
        """The program hash a deployed name stands for."""
        return self.store.call("resolve", name=name)

    def next_timer(self) -> float | None:
        """When the earliest timer is due."""
        return self.store.call("next_timer")

    def has_work(self) -> bool:
        """Whether anything is runnable or will be."""
        return self.store.call("has_work")

    def clock(self) -> float:
        """The store's clock."""
        return self.store.call("clock")


def _detail(body: bytes) -> str:
    import json

    try:
        return str(json.loads(body).get("detail", ""))
    except (ValueError, AttributeError):
        return ""
