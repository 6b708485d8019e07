"""The LMDB store: one directory, shared safely by the processes of one host.

Named databases and their keys (``id`` is a task id in UTF-8, ``seq`` and ``request`` are
8-byte big-endian integers, ``due`` is milliseconds since the epoch, big-endian):

    meta      b"format"                 -> b"flowmetal-store/3"
    programs  hash                      -> CBOR program record
    names     name                      -> program hash
    tasks     id                        -> task record (records.TaskRecord)
    conts     id                        -> encoded continuation (codec.py)
    inbox     id 0x00 seq               -> message record
    timers    due id 0x00 request       -> timer record
    log       id 0x00 seq               -> a chunk: CBOR array of the event records
                                           numbered seq, seq + 1, ...
    output    id 0x00 seq               -> a chunk: CBOR array of texts, likewise
    tails     table 0x00 id             -> the newest items of a journal (log, output):
                                           first seq (8 bytes), count (2 bytes), then
                                           that many CBOR items
    runnable  id                        -> b""
    workers   id                        -> worker record
    outbox    id 0x00 request           -> not_before, lease_until (big-endian doubles,
                                           NaN for none), then the outbox record
    tokens    sha256 of a token (hex)   -> access token record
    callbacks sha256 of a token (hex)   -> task id 0x00, then the callback record
    (meta also holds the settings: b"setting:" key -> value)

LMDB allows one writer at a time across processes, so every write transaction is a
serializable read-modify-write; readers see a consistent snapshot and never block.  The
store's clock is this host's clock: every process using the store runs here.  A worker's
liveness lock is an exclusive ``flock`` on ``workers/<id>.lock`` in the directory, which
the kernel drops when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import cbor2
import lmdb

from ..hashing import sha256
from .base import STORE_FORMAT, StoreError
from .lmdb_env import Environment
from .tables import TaskColumns, TaskFilter
from .wakeups import Wakeups

TABLES = ("meta", "programs", "names", "tasks", "conts", "inbox", "timers", "log", "output",
          "tails", "runnable", "workers", "outbox", "tokens", "callbacks")
# Made by the first write to a store from before they existed:
ADDED_TABLES = ("outbox", "tokens", "callbacks")
CHUNK_ITEMS = 8     # a journal tail becomes a chunk at this many items,
CHUNK_BYTES = 512   # or at this many bytes
_TAIL_HEAD = struct.Struct(">QH")  # a tail's first sequence number and item count
CONTENDED = 0.000_5  # waiting this long for the write lock means another process held it
DRAFT_FOR = 2.0      # ... and drafts are worth making for this long after
_U64 = struct.Struct(">Q")
_OUTBOX_HEAD = struct.Struct(">dd")  # an outbox entry's not_before and lease_until


def _key(task_id: str, seq: int) -> bytes:
    return task_id.encode() + b"\0" + _U64.pack(seq)


def _prefix(task_id: str) -> bytes:
    return task_id.encode() + b"\0"


def _seq(key: bytes) -> int:
    return _U64.unpack(key[-8:])[0]


def _bytes_item(data: bytes) -> bytes:
    """``data`` as a CBOR byte string (what ``cbor2.dumps(data)`` makes, without a call
    into it)."""
    n = len(data)
    if n < 24:
        head = bytes((0x40 + n,))
    elif n < 0x100:
        head = bytes((0x58, n))
    elif n < 0x10000:
        head = b"\x59" + n.to_bytes(2, "big")
    elif n < 0x100000000:
        head = b"\x5a" + n.to_bytes(4, "big")
    else:
        head = b"\x5b" + n.to_bytes(8, "big")
    return head + data


def _numbered(first: int, chunk: bytes, after: int) -> Iterator[tuple[int, Any]]:
    """The items of a journal chunk whose first is number ``first``, above ``after``."""
    for i, value in enumerate(cbor2.loads(chunk)):
        if first + i > after:
            yield first + i, value


class LmdbTables:
    """One transaction on an LMDB store (see ``tables.Tables`` for the methods)."""

    needs_columns = False  # listings filter the records themselves

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, object]):
        self.txn = txn
        self.dbs = dbs
        self._now: float | None = None
        self._cursor = ""  # where claimable's rotation stands (kept by the backend)
        self.wake = False  # the transaction made work: wake the waiting processes
        # Journal tails appended to in this transaction, written once at its end
        # (``flush``): (table, task id) -> (first, count, items).
        self._tails: dict[tuple[str, str], tuple[int, int, bytes]] = {}

    def clock(self) -> float:
        if self._now is None:
            self._now = time.time()
        return self._now

    # tasks and continuations ---------------------------------------------------------

    def get_task(self, task_id: str) -> bytes | None:
        data = self.txn.get(task_id.encode(), db=self.dbs["tasks"])
        return None if data is None else bytes(data)

    def get_tasks(self, task_ids: Iterable[str]) -> dict[str, bytes]:
        out = {}
        get, db = self.txn.get, self.dbs["tasks"]
        for task_id in task_ids:
            data = get(task_id.encode(), db=db)
            if data is not None:
                out[task_id] = data
        return out

    def put_task(self, task_id: str, data: bytes, columns: TaskColumns | None) -> None:
        self.txn.put(task_id.encode(), data, db=self.dbs["tasks"])

    def scan_tasks(self, where: TaskFilter, after: str = "", limit: int = 100,
                   descending: bool = False) -> list[bytes]:
        from .filters import matches

        out: list[bytes] = []
        cursor = self.txn.cursor(db=self.dbs["tasks"])
        start = (where.id_prefix or "") if not after else after
        if descending:
            found = cursor.set_range(after.encode()) if after else cursor.last()
            if after and found:
                found = cursor.prev()
            elif after:
                found = cursor.last()
            step = cursor.prev
        else:
            found = cursor.set_range(start.encode() + (b"\0" if after else b""))
            step = cursor.next
        while found and len(out) < limit:
            key = bytes(cursor.key()).decode()
            if where.id_prefix and not key.startswith(where.id_prefix):
                if descending and key > where.id_prefix:
                    found = step()
                    continue
                break
            data = bytes(cursor.value())
            if matches(where, data):
                out.append(data)
            found = step()
        return out

    def count_tasks(self, where: TaskFilter) -> dict[str, int]:
        from .filters import status_of

        counts: dict[str, int] = {}
        for data in self.scan_tasks(where, limit=1 << 62):
            status = status_of(data)
            counts[status] = counts.get(status, 0) + 1
        return counts

    def get_cont(self, task_id: str) -> bytes | None:
        data = self.txn.get(task_id.encode(), db=self.dbs["conts"])
        return None if data is None else bytes(data)

    def put_cont(self, task_id: str, data: bytes) -> None:
        self.txn.put(task_id.encode(), data, db=self.dbs["conts"])

    def delete_task_data(self, task_id: str) -> None:
        for seq, _ in list(self._items("inbox", task_id, 0)):
            self.txn.delete(_key(task_id, seq), db=self.dbs["inbox"])
        self._journal_delete("log", task_id)
        self._journal_delete("output", task_id)
        self.txn.delete(task_id.encode(), db=self.dbs["conts"])
        self.txn.delete(task_id.encode(), db=self.dbs["runnable"])

    def delete_task(self, task_id: str) -> None:
        self.txn.delete(task_id.encode(), db=self.dbs["tasks"])
        for _, request, _ in list(self.outbox_items(task_id)):
            self.outbox_delete(task_id, request)
        for key, _ in self.callbacks_of(task_id):
            self.callback_delete(key)

    # programs --------------------------------------------------------------------------

    def get_program(self, digest: str) -> bytes | None:
        data = self.txn.get(digest.encode(), db=self.dbs["programs"])
        return None if data is None else bytes(data)

    def put_program(self, digest: str, data: bytes) -> None:
        self.txn.put(digest.encode(), data, db=self.dbs["programs"], overwrite=False)

    def all_programs(self) -> Iterator[tuple[str, bytes]]:
        for key, data in self.txn.cursor(db=self.dbs["programs"]):
            yield bytes(key).decode(), bytes(data)

    def all_names(self) -> Iterator[tuple[str, str]]:
        for key, data in self.txn.cursor(db=self.dbs["names"]):
            yield bytes(key).decode(), bytes(data).decode()

    def get_name(self, name: str) -> str | None:
        data = self.txn.get(name.encode(), db=self.dbs["names"])
        return None if data is None else bytes(data).decode()

    def put_name(self, name: str, digest: str) -> None:
        self.txn.put(name.encode(), digest.encode(), db=self.dbs["names"])

    # per-task sequences ----------------------------------------------------------------

    def _items(self, table: str, task_id: str, after: int) -> Iterator[tuple[int, bytes]]:
        prefix = _prefix(task_id)
        cursor = self.txn.cursor(db=self.dbs[table])
        if not cursor.set_range(_key(task_id, after + 1)):
            return
        for key, data in cursor:
            if not key.startswith(prefix):
                return
            yield _seq(key), bytes(data)

    def inbox_put(self, task_id: str, seq: int, data: bytes) -> None:
        self.txn.put(_key(task_id, seq), data, db=self.dbs["inbox"])

    def inbox_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, bytes]]:
        return self._items("inbox", task_id, after)

    def inbox_delete(self, task_id: str, seq: int) -> None:
        self.txn.delete(_key(task_id, seq), db=self.dbs["inbox"])

    # Journals (the event log, the output): append-only, in chunks.  The newest items
    # of a task wait in its tail (one small value, rewritten by each transaction that
    # appends, once) until the tail is full and becomes a chunk, so that a commit of
    # many tasks' steps rewrites a few densely packed tail pages rather than one journal
    # page per task.

    @staticmethod
    def _tail_key(table: str, task_id: str) -> bytes:
        return table.encode() + b"\0" + task_id.encode()

    def _tail(self, table: str, task_id: str) -> tuple[int, int, bytes]:
        """(first sequence number, count, items) of the task's tail."""
        kept = self._tails.get((table, task_id))
        if kept is not None:
            return kept
        data = self.txn.get(self._tail_key(table, task_id), db=self.dbs["tails"])
        if data is None:
            return 1, 0, b""
        first, count = _TAIL_HEAD.unpack_from(data)
        return first, count, bytes(data[_TAIL_HEAD.size:])

    def _journal_append(self, table: str, task_id: str, item: bytes) -> int:
        first, count, items = self._tail(table, task_id)
        seq = first + count  # the new item's number
        items += item
        count += 1
        if count >= CHUNK_ITEMS or len(items) >= CHUNK_BYTES:
            from ..codec import array_header  # (here: a store is opened without the language)

            self.txn.put(_key(task_id, first), array_header(count) + items,
                         db=self.dbs[table])
            first, count, items = seq + 1, 0, b""
        self._tails[(table, task_id)] = (first, count, items)
        return seq

    def flush(self) -> None:
        """Write the journal tails appended to (before the transaction commits)."""
        put, db = self.txn.put, self.dbs["tails"]
        for (table, task_id), (first, count, items) in self._tails.items():
            put(self._tail_key(table, task_id), _TAIL_HEAD.pack(first, count) + items, db=db)
        self._tails.clear()

    def _journal_items(self, table: str, task_id: str, after: int) -> Iterator[tuple[int, Any]]:
        prefix = _prefix(task_id)
        start = _key(task_id, after + 1)
        cursor = self.txn.cursor(db=self.dbs[table])
        found = cursor.set_range(start)
        if not (found and cursor.key() == start):
            # after + 1 may be inside the chunk before the one found, if that is this task's
            back = cursor.prev() if found else cursor.last()
            found = back and cursor.key().startswith(prefix) or cursor.set_range(start)
        while found and cursor.key().startswith(prefix):
            yield from _numbered(_seq(cursor.key()), cursor.value(), after)
            found = cursor.next()
        first, count, items = self._tail(table, task_id)
        if count:
            from ..codec import array_header

            yield from _numbered(first, array_header(count) + items, after)

    def _journal_delete(self, table: str, task_id: str) -> None:
        self._tails.pop((table, task_id), None)
        for seq, _ in list(self._items(table, task_id, 0)):  # chunks start at seq 1 or more
            self.txn.delete(_key(task_id, seq), db=self.dbs[table])
        self.txn.delete(self._tail_key(table, task_id), db=self.dbs["tails"])

    def log_append(self, task_id: str, data: bytes) -> int:
        return self._journal_append("log", task_id, _bytes_item(data))

    def log_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, bytes]]:
        return self._journal_items("log", task_id, after)

    def output_append(self, task_id: str, text: str) -> int:
        return self._journal_append("output", task_id, cbor2.dumps(text))

    def output_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, str]]:
        return self._journal_items("output", task_id, after)

    # timers ----------------------------------------------------------------------------

    @staticmethod
    def _timer_key(due: float, task_id: str, request: int) -> bytes:
        return _U64.pack(max(0, int(due * 1000))) + _key(task_id, request)

    def timer_add(self, due: float, task_id: str, request: int, data: bytes) -> None:
        self.wake = True
        self.txn.put(self._timer_key(due, task_id, request), data, db=self.dbs["timers"])

    def timers_due(self, now: float, limit: int) -> list[tuple[float, str, int, bytes]]:
        out = []
        horizon = _U64.pack(int(now * 1000))
        for key, data in self.txn.cursor(db=self.dbs["timers"]):
            if key[:8] > horizon or len(out) >= limit:
                break
            due = _U64.unpack(key[:8])[0] / 1000
            out.append((due, key[8:-9].decode(), _seq(key), bytes(data)))
        return out

    def timer_delete(self, due: float, task_id: str, request: int) -> None:
        self.txn.delete(self._timer_key(due, task_id, request), db=self.dbs["timers"])

    def next_timer(self) -> float | None:
        cursor = self.txn.cursor(db=self.dbs["timers"])
        if not cursor.first():
            return None
        return _U64.unpack(cursor.key()[:8])[0] / 1000

    # the outbox ------------------------------------------------------------------------

    def outbox_put(self, task_id: str, request: int, data: bytes, not_before: float,
                   lease_until: float | None) -> None:
        self.wake = True
        head = _OUTBOX_HEAD.pack(not_before, math.nan if lease_until is None else lease_until)
        self.txn.put(_key(task_id, request), head + data, db=self.dbs["outbox"])

    def outbox_get(self, task_id: str, request: int) -> bytes | None:
        db = self.dbs.get("outbox")
        data = None if db is None else self.txn.get(_key(task_id, request), db=db)
        return None if data is None else bytes(data[_OUTBOX_HEAD.size:])

    def outbox_delete(self, task_id: str, request: int) -> None:
        db = self.dbs.get("outbox")
        if db is not None:
            self.txn.delete(_key(task_id, request), db=db)

    def outbox_due(self, now: float, limit: int) -> list[tuple[str, int, bytes]]:
        # Entries are few (one per request in flight): a scan is cheaper than an index.
        found = []
        for task_id, request, data in self._outbox(b""):
            not_before, until = _OUTBOX_HEAD.unpack_from(data)
            if not_before <= now and not until > now:  # NaN: no lease
                found.append((not_before, task_id, request, bytes(data[_OUTBOX_HEAD.size:])))
        found.sort(key=lambda item: item[:3])
        return [(task_id, request, data) for _, task_id, request, data in found[:limit]]

    def outbox_items(self, task_id: str | None = None) -> Iterator[tuple[str, int, bytes]]:
        for task, request, data in self._outbox(b"" if task_id is None else _prefix(task_id)):
            yield task, request, bytes(data[_OUTBOX_HEAD.size:])

    def _outbox(self, prefix: bytes) -> Iterator[tuple[str, int, memoryview | bytes]]:
        db = self.dbs.get("outbox")
        if db is None:
            return
        cursor = self.txn.cursor(db=db)
        if not cursor.set_range(prefix):
            return
        for key, data in cursor:
            if not key.startswith(prefix):
                return
            yield bytes(key[:-9]).decode(), _seq(key), data

    # settings, access tokens and callbacks ---------------------------------------------

    def setting_get(self, key: str, lock: bool = False) -> str | None:
        # One writer at a time: a write transaction's reads are locked already.
        data = self.txn.get(b"setting:" + key.encode(), db=self.dbs["meta"])
        return None if data is None else bytes(data).decode()

    def setting_put(self, key: str, value: str | None) -> None:
        if value is None:
            self.txn.delete(b"setting:" + key.encode(), db=self.dbs["meta"])
        else:
            self.txn.put(b"setting:" + key.encode(), value.encode(), db=self.dbs["meta"])

    def token_put(self, digest: str, data: bytes) -> None:
        self.txn.put(digest.encode(), data, db=self.dbs["tokens"])

    def token_get(self, digest: str) -> bytes | None:
        db = self.dbs.get("tokens")
        data = None if db is None else self.txn.get(digest.encode(), db=db)
        return None if data is None else bytes(data)

    def token_items(self) -> Iterator[tuple[str, bytes]]:
        db = self.dbs.get("tokens")
        if db is not None:
            for key, data in self.txn.cursor(db=db):
                yield bytes(key).decode(), bytes(data)

    def callback_put(self, digest: str, task_id: str, data: bytes) -> None:
        self.txn.put(digest.encode(), _prefix(task_id) + data, db=self.dbs["callbacks"])

    def callback_get(self, digest: str) -> bytes | None:
        db = self.dbs.get("callbacks")
        data = None if db is None else self.txn.get(digest.encode(), db=db)
        return None if data is None else bytes(data).split(b"\0", 1)[1]

    def callback_delete(self, digest: str) -> None:
        db = self.dbs.get("callbacks")
        if db is not None:
            self.txn.delete(digest.encode(), db=db)

    def callbacks_of(self, task_id: str) -> list[tuple[str, bytes]]:
        db = self.dbs.get("callbacks")
        if db is None:
            return []
        prefix = _prefix(task_id)
        return [(bytes(key).decode(), bytes(data)[len(prefix):])
                for key, data in self.txn.cursor(db=db) if bytes(data).startswith(prefix)]

    # work to do ------------------------------------------------------------------------

    def runnable_add(self, task_id: str) -> None:
        # Not rewriting an existing key keeps its page clean (fewer pages to sync).
        if self.txn.put(task_id.encode(), b"", db=self.dbs["runnable"], overwrite=False):
            self.wake = True

    def runnable_remove(self, task_id: str) -> None:
        self.txn.delete(task_id.encode(), db=self.dbs["runnable"])

    def _runnable(self, limit: int, after: str = "") -> list[str]:
        out: list[str] = []
        cursor = self.txn.cursor(db=self.dbs["runnable"])
        if not cursor.set_range(after.encode() + b"\0" if after else b""):
            return out
        for key in cursor.iternext(values=False):
            out.append(bytes(key).decode())
            if len(out) >= limit:
                break
        return out

    def claimable(self, worker: str, now: float, limit: int) -> list[str]:
        # The lease is judged by the engine from the record; here, the runnable ids in
        # turn from where the last claim stopped, so that none starves.
        ids = self._runnable(limit, after=self._cursor)
        if len(ids) < limit and self._cursor:
            ids += [t for t in self._runnable(limit - len(ids)) if t not in ids]
        if ids:
            self._cursor = ids[min(len(ids), max(1, limit // 4)) - 1]
        return ids

    def leased(self) -> list[str]:
        from .filters import has_lease

        return [t for t in self._runnable(1 << 62)
                if (data := self.get_task(t)) is not None and has_lease(data)]

    def any_runnable(self) -> bool:
        return bool(self._runnable(1))

    # workers ---------------------------------------------------------------------------

    def put_worker(self, worker: str, data: bytes) -> None:
        self.txn.put(worker.encode(), data, db=self.dbs["workers"])

    def get_workers(self) -> dict[str, bytes]:
        return {bytes(k).decode(): bytes(v) for k, v in
                self.txn.cursor(db=self.dbs["workers"])}

    def delete_worker(self, worker: str) -> None:
        self.txn.delete(worker.encode(), db=self.dbs["workers"])


class _Writing:
    """``LmdbStore.write()``: a class rather than a generator (a step's every round
    enters one)."""

    __slots__ = ("store", "inner", "tables")

    def __init__(self, store: LmdbStore):
        self.store = store

    def __enter__(self) -> LmdbTables:
        store = self.store
        asked = time.monotonic()
        self.inner = store.environment.write()
        txn = self.inner.__enter__()
        began = time.monotonic()
        if began - asked > CONTENDED:
            store.contended_until = began + DRAFT_FOR
        tables = self.tables = LmdbTables(txn, store.environment.dbs)
        tables._cursor = store._cursor
        return tables

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            try:
                self.tables.flush()
            except BaseException as error:  # written nothing: the transaction is aborted
                self.inner.__exit__(type(error), error, error.__traceback__)
                raise
        self.inner.__exit__(exc_type, exc, tb)  # raises if the commit failed
        if exc is None:
            store, tables = self.store, self.tables
            store._cursor = tables._cursor
            if tables.wake:
                store.wakeups.wake()
        return False


class WorkerLock:
    """A worker's liveness lock: an exclusive flock held while the worker lives."""

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        """Let go of the lock (the worker stopped)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class LmdbStore:
    """The LMDB backend of a ``TaskStore``; ``sync=False`` trades durability for speed
    (tests and benchmarks that measure the difference)."""

    single_writer = True

    def __init__(self, path: str, sync: bool = True, create: bool = True):
        self.path = self.location = os.path.abspath(path)
        if not create and not os.path.isdir(self.path):
            raise StoreError(f"no store at {self.path}")
        os.makedirs(self.path, exist_ok=True)
        self._cursor = ""
        self.contended_until = 0.0
        self.wakeups = Wakeups(self.path)
        try:
            self.environment = Environment.open(self.path, TABLES, sync=sync, create=create,
                                                optional=ADDED_TABLES)
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from None
        # Read first: opening a store to look at it must not take the writer's lock.
        with self.environment.read() as txn:
            found = txn.get(b"format", db=self.environment.dbs["meta"])
        if found is None:
            def stamp(txn: lmdb.Transaction) -> bytes | None:
                found = txn.get(b"format", db=self.environment.dbs["meta"])
                if found is None:
                    txn.put(b"format", STORE_FORMAT.encode(), db=self.environment.dbs["meta"])
                return found
            found = self.environment.run_write(stamp)
        if found is not None and bytes(found).decode() != STORE_FORMAT:
            raise StoreError(f"{self.path} is a {bytes(found).decode()} store; "
                             f"this Flowmetal reads {STORE_FORMAT}")

    @property
    def env(self) -> lmdb.Environment:
        """The LMDB environment itself (for tools that measure it)."""
        return self.environment._env

    @property
    def dbs(self) -> dict[str, object]:
        """The named databases' handles (look them up per transaction)."""
        return self.environment.dbs

    @contextmanager
    def read(self) -> Iterator[LmdbTables]:
        """A read-only snapshot."""
        with self.environment.read() as txn:
            yield LmdbTables(txn, self.environment.dbs)

    def write(self) -> AbstractContextManager[LmdbTables]:
        """A write transaction, committed on success."""
        return _Writing(self)

    def contended(self) -> bool:
        """Whether other processes have lately held the write lock when this one asked."""
        return time.monotonic() < self.contended_until

    def _lock_path(self, worker: str) -> str:
        directory = os.path.join(self.path, "workers")
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, sha256(worker.encode()).hexdigest()[:32]
                            + ".lock")

    def hold_worker(self, worker: str) -> WorkerLock:
        """Take the worker's liveness lock."""
        return WorkerLock(self._lock_path(worker))

    def worker_alive(self, worker: str) -> bool:
        """Whether some process holds the worker's liveness lock."""
        path = self._lock_path(worker)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def wait_for_work(self, timeout: float) -> None:
        """Return when another process made work, or after ``timeout`` seconds."""
        if timeout > 0:
            self.wakeups.wait(timeout)

    def close(self) -> None:
        """Nothing to do: environments stay open for the life of the process."""

    def size_bytes(self) -> int:
        """Bytes of the data file."""
        return self.environment.size_bytes()
