"""The LMDB store: one directory, shared safely by the processes of one host.

Named databases and their keys (``id`` is a task id in UTF-8, ``seq`` and ``request`` are
8-byte big-endian integers, ``due`` is milliseconds since the epoch, big-endian):

    meta      b"format"                 -> b"flowmetal-store/2"
    programs  hash                      -> CBOR program record
    tasks     id                        -> CBOR task record
    conts     id                        -> encoded continuation (codec.py)
    inbox     id 0x00 seq               -> CBOR message record
    timers    due id 0x00 request       -> CBOR timer record
    log       id 0x00 seq               -> a chunk: CBOR array of the event records
                                           numbered seq, seq + 1, ...
    output    id 0x00 seq               -> a chunk: CBOR array of texts, likewise
    tails     table 0x00 id             -> the newest items of a journal (log, output):
                                           first seq (8 bytes), count (2 bytes), then
                                           that many CBOR items
    runnable  id                        -> b""

LMDB allows one writer at a time across processes, so every write transaction is a
serializable read-modify-write; readers see a consistent snapshot and never block.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cbor2
import lmdb

from ..codec import array_header
from .base import STORE_FORMAT, StoreError

TABLES = ("meta", "programs", "tasks", "conts", "inbox", "timers", "log", "output",
          "tails", "runnable")
CHUNK_ITEMS = 8     # a journal tail becomes a chunk at this many items,
CHUNK_BYTES = 512   # or at this many bytes
_TAIL_HEAD = struct.Struct(">QH")  # a tail's first sequence number and item count
MAP_SIZE = int(os.environ.get("FLOWMETAL_LMDB_MAP_SIZE", str(64 << 30)))
_U64 = struct.Struct(">Q")

# LMDB forbids opening one environment twice in a process: share them by path.
_ENVS: dict[str, tuple[lmdb.Environment, dict[str, object]]] = {}
_ENVS_LOCK = threading.Lock()


def _key(task_id: str, seq: int) -> bytes:
    return task_id.encode() + b"\0" + _U64.pack(seq)


def _prefix(task_id: str) -> bytes:
    return task_id.encode() + b"\0"


def _seq(key: bytes) -> int:
    return _U64.unpack(key[-8:])[0]


def _numbered(first: int, chunk: bytes, after: int) -> Iterator[tuple[int, Any]]:
    """The items of a journal chunk whose first is number ``first``, above ``after``."""
    for i, value in enumerate(_load(chunk)):
        if first + i > after:
            yield first + i, value


def _load(data: bytes) -> Any:
    return cbor2.loads(data)


def _dump(record: dict) -> bytes:
    return cbor2.dumps(record)


class LmdbTxn:
    """A transaction on an LMDB store (see ``base.Txn`` for the methods' meaning)."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, object]):
        self.txn = txn
        self.dbs = dbs

    # tasks and continuations -------------------------------------------------------

    def get_task(self, task_id: str) -> dict | None:
        data = self.txn.get(task_id.encode(), db=self.dbs["tasks"])
        return None if data is None else _load(data)

    def put_task(self, record: dict) -> None:
        self.txn.put(record["id"].encode(), _dump(record), db=self.dbs["tasks"])

    def get_task_data(self, task_id: str) -> bytes | None:
        return self.txn.get(task_id.encode(), db=self.dbs["tasks"])

    def put_task_data(self, task_id: str, data: bytes) -> None:
        self.txn.put(task_id.encode(), data, db=self.dbs["tasks"])

    def tasks(self) -> Iterator[dict]:
        for _, data in self.txn.cursor(db=self.dbs["tasks"]):
            yield _load(data)

    def get_cont(self, task_id: str) -> bytes | None:
        return self.txn.get(task_id.encode(), db=self.dbs["conts"])

    def put_cont(self, task_id: str, data: bytes) -> None:
        self.txn.put(task_id.encode(), data, db=self.dbs["conts"])

    def get_program(self, digest: str) -> dict | None:
        data = self.txn.get(digest.encode(), db=self.dbs["programs"])
        return None if data is None else _load(data)

    def put_program(self, digest: str, record: dict) -> None:
        self.txn.put(digest.encode(), _dump(record), db=self.dbs["programs"],
                     overwrite=False)

    # per-task sequences --------------------------------------------------------------

    def _items(self, table: str, task_id: str, after: int) -> Iterator[tuple[int, bytes]]:
        prefix = _prefix(task_id)
        cursor = self.txn.cursor(db=self.dbs[table])
        if not cursor.set_range(_key(task_id, after + 1)):
            return
        for key, data in cursor:
            if not key.startswith(prefix):
                return
            yield _seq(key), data

    def inbox_put(self, task_id: str, seq: int, record: dict) -> None:
        self.txn.put(_key(task_id, seq), _dump(record), db=self.dbs["inbox"])

    def inbox_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, dict]]:
        for seq, data in self._items("inbox", task_id, after):
            yield seq, _load(data)

    def inbox_delete(self, task_id: str, seq: int) -> None:
        self.txn.delete(_key(task_id, seq), db=self.dbs["inbox"])

    # Journals (the event log, the output): append-only, in chunks.  The newest items
    # of a task wait in its tail (one small value, rewritten at each append) until the
    # tail is full and becomes a chunk, so that a commit of many tasks' steps rewrites
    # a few densely packed tail pages rather than one journal page per task.

    @staticmethod
    def _tail_key(table: str, task_id: str) -> bytes:
        return table.encode() + b"\0" + task_id.encode()

    def _tail(self, table: str, task_id: str) -> tuple[int, int, bytes]:
        """(first sequence number, count, items) of the task's tail."""
        data = self.txn.get(self._tail_key(table, task_id), db=self.dbs["tails"])
        if data is None:
            return 1, 0, b""
        first, count = _TAIL_HEAD.unpack_from(data)
        return first, count, data[_TAIL_HEAD.size:]

    def _journal_append(self, table: str, task_id: str, item: bytes) -> int:
        first, count, items = self._tail(table, task_id)
        seq = first + count  # the new item's number
        items += item
        count += 1
        if count >= CHUNK_ITEMS or len(items) >= CHUNK_BYTES:
            self.txn.put(_key(task_id, first), array_header(count) + items,
                         db=self.dbs[table])
            first, count, items = seq + 1, 0, b""
        self.txn.put(self._tail_key(table, task_id), _TAIL_HEAD.pack(first, count) + items,
                     db=self.dbs["tails"])
        return seq

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
            yield from _numbered(first, array_header(count) + items, after)

    def _journal_delete(self, table: str, task_id: str) -> None:
        for seq, _ in list(self._items(table, task_id, 0)):  # chunks start at seq 1 or more
            self.txn.delete(_key(task_id, seq), db=self.dbs[table])
        self.txn.delete(self._tail_key(table, task_id), db=self.dbs["tails"])

    def log_append(self, task_id: str, record: dict) -> int:
        return self._journal_append("log", task_id, _dump(record))

    def log_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, dict]]:
        return self._journal_items("log", task_id, after)

    def output_append(self, task_id: str, text: str) -> int:
        return self._journal_append("output", task_id, cbor2.dumps(text))

    def output_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, str]]:
        return self._journal_items("output", task_id, after)

    def delete_task_data(self, task_id: str) -> None:
        """Remove everything kept for a task (after it moved to another store)."""
        for seq, _ in list(self._items("inbox", task_id, 0)):
            self.txn.delete(_key(task_id, seq), db=self.dbs["inbox"])
        self._journal_delete("log", task_id)
        self._journal_delete("output", task_id)
        self.txn.delete(task_id.encode(), db=self.dbs["conts"])
        self.txn.delete(task_id.encode(), db=self.dbs["runnable"])

    # timers --------------------------------------------------------------------------

    @staticmethod
    def _timer_key(due: float, task_id: str, request: int) -> bytes:
        return _U64.pack(max(0, int(due * 1000))) + _key(task_id, request)

    def timer_add(self, due: float, task_id: str, request: int, record: dict) -> None:
        self.txn.put(self._timer_key(due, task_id, request), _dump(record),
                     db=self.dbs["timers"])

    def timers_due(self, now: float, limit: int) -> list[tuple[float, str, int, dict]]:
        out = []
        horizon = _U64.pack(int(now * 1000))
        for key, data in self.txn.cursor(db=self.dbs["timers"]):
            if key[:8] > horizon or len(out) >= limit:
                break
            due = _U64.unpack(key[:8])[0] / 1000
            task_id = key[8:-9].decode()
            out.append((due, task_id, _seq(key), _load(data)))
        return out

    def timer_delete(self, due: float, task_id: str, request: int) -> None:
        self.txn.delete(self._timer_key(due, task_id, request), db=self.dbs["timers"])

    def next_timer(self) -> float | None:
        cursor = self.txn.cursor(db=self.dbs["timers"])
        if not cursor.first():
            return None
        return _U64.unpack(cursor.key()[:8])[0] / 1000

    # runnable set --------------------------------------------------------------------

    def runnable_add(self, task_id: str) -> None:
        # Not rewriting an existing key keeps its page clean (fewer pages to sync).
        self.txn.put(task_id.encode(), b"", db=self.dbs["runnable"], overwrite=False)

    def runnable_remove(self, task_id: str) -> None:
        self.txn.delete(task_id.encode(), db=self.dbs["runnable"])

    def runnable(self, limit: int, after: str = "") -> list[str]:
        out: list[str] = []
        cursor = self.txn.cursor(db=self.dbs["runnable"])
        if not cursor.set_range(after.encode() + b"\0" if after else b""):
            return out
        for key in cursor.iternext(values=False):
            out.append(bytes(key).decode())
            if len(out) >= limit:
                break
        return out


class LmdbStore:
    """A store in an LMDB directory; ``sync=False`` trades durability for speed (tests
    and benchmarks that measure the difference)."""

    def __init__(self, path: str, sync: bool = True, create: bool = True):
        self.path = os.path.abspath(path)
        if not create and not os.path.isdir(self.path):
            raise StoreError(f"no store at {self.path}")
        os.makedirs(self.path, exist_ok=True)
        key = f"{self.path}|{sync}"
        with _ENVS_LOCK:
            if key not in _ENVS:
                try:
                    env = lmdb.open(self.path, map_size=MAP_SIZE, max_dbs=len(TABLES) + 1,
                                    sync=sync, metasync=sync, readahead=False,
                                    max_readers=512)
                except lmdb.Error as exc:
                    raise StoreError(f"cannot open the store at {self.path}: {exc}") from None
                dbs = {name: env.open_db(name.encode()) for name in TABLES}
                _ENVS[key] = (env, dbs)
            self.env, self.dbs = _ENVS[key]
        # Read first: opening a store to look at it must not take the writer's lock.
        with self.env.begin() as txn:
            found = txn.get(b"format", db=self.dbs["meta"])
        if found is None:
            with self.env.begin(write=True) as txn:
                found = txn.get(b"format", db=self.dbs["meta"])
                if found is None:
                    txn.put(b"format", STORE_FORMAT.encode(), db=self.dbs["meta"])
        if found is not None and bytes(found).decode() != STORE_FORMAT:
            raise StoreError(f"{self.path} is a {bytes(found).decode()} store; "
                             f"this Flowmetal reads {STORE_FORMAT}")

    @contextmanager
    def read(self) -> Iterator[LmdbTxn]:
        """A read-only snapshot."""
        with self.env.begin(buffers=False) as txn:
            yield LmdbTxn(txn, self.dbs)

    @contextmanager
    def write(self) -> Iterator[LmdbTxn]:
        """A write transaction, committed on success."""
        try:
            with self.env.begin(write=True) as txn:
                yield LmdbTxn(txn, self.dbs)
        except lmdb.MapFullError:
            raise StoreError(f"the store at {self.path} is full (FLOWMETAL_LMDB_MAP_SIZE)"
                             ) from None

    def close(self) -> None:
        """Nothing to do: environments stay open for the life of the process."""

    def size_bytes(self) -> int:
        """Bytes of the data file."""
        return os.path.getsize(os.path.join(self.path, "data.mdb"))
