"""Opening and writing an LMDB environment so that its faults stay clear store errors.

``Environment`` wraps one open ``lmdb.Environment`` and its named databases; ``LmdbStore``
keeps its tables in one.  What it guards against:

- **Readers never wait for a writer.**  A named database's handle outlives the
  transaction that opened it only if that transaction commits, and py-lmdb "commits" a
  read transaction by resetting it, so a read-write environment can only open its
  tables in a write transaction, which waits behind a stopped writer.  So an existing
  store is first opened read-only, where py-lmdb opens them in a read transaction that
  it does commit; the first ``write()`` reopens it read-write.  Creating a store, or a
  missing table, needs the writer's lock.
- **A truncated data file is refused, never mapped** (``check_data_file``): pages mapped
  past the end of the file kill the process with SIGBUS when read.
- **The map starts small and grows** (an address-space limit, ``ulimit -v``, refused the
  old fixed 64 GiB map): a transaction that fills the map is aborted and the map grown
  (``MapGrown``: retry it, or let ``run_write`` do so); a map another process grew is
  adopted when a transaction begins.
- **A full disk is ``StoreUnavailable``**: nothing of the failed transaction is written and
  the environment stays usable, so the next transaction succeeds once there is space.

LMDB forbids opening one environment twice in a process, so ``Environment.open`` shares
one per directory.  Growing the map, or reopening the environment, replaces the memory map
under every transaction of the process: it waits until the other threads' transactions
have ended (and blocks new ones meanwhile); transactions still open in the calling thread
are invalidated.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import lmdb

from ..structs import dataclass
from .base import StoreError, StoreReadOnly, StoreRetry, StoreUnavailable

try:
    import resource
except ImportError:  # not on this platform: no address-space limit to respect
    resource = None  # type: ignore[assignment]

T = TypeVar("T")

MiB = 1 << 20
MIN_MAP_SIZE = 64 * MiB   # the smallest map a store starts with
MAP_ALIGN = 1 * MiB       # map sizes are multiples of this
MAP_MARGIN = 32 * MiB     # address space left for the rest of the process when growing
MAX_READERS = 512
WAIT_SECONDS = 30.0       # how long a remap waits for the other threads' transactions
DISK_FULL_BYTES = 4 * MiB  # an EIO with less free space than this is a full disk
MAP_SIZE_ENV = "FLOWMETAL_LMDB_MAP_SIZE"  # bytes: overrides the starting map size

# LMDB 0.9's data file on a 64-bit little-endian host (lmdb's mdb.c): every page starts
# with a 16-byte header; pages 0 and 1 are meta pages whose MDB_meta follows the header.
MDB_MAGIC = 0xBEEFC0DE
MDB_DATA_VERSION = 1
_PAGE = struct.Struct("<QHHHH")     # mp_pgno, mp_pad, mp_flags, mp_lower, mp_upper
_PAGE_PAGES = struct.Struct("<I")   # mp_pages (overflow pages), at offset 12
PAGE_HEADER = _PAGE.size            # 16
_META = struct.Struct("<IIQQ" + "IHHQQQQQ" * 2 + "QQ")
# mm_magic, mm_version, mm_address, mm_mapsize, mm_dbs[2] (each MDB_db: md_pad — the page
# size in mm_dbs[0] —, md_flags, md_depth, md_branch_pages, md_leaf_pages,
# md_overflow_pages, md_entries, md_root), mm_last_pg, mm_txnid
META_END = PAGE_HEADER + _META.size  # 152: the bytes LMDB reads of each meta page
_NODE = struct.Struct("<HHHH")      # mn_lo, mn_hi, mn_flags, mn_ksize; then key, data
_U64 = struct.Struct("<Q")
P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
F_BIGDATA = 0x01
P_INVALID = (1 << 64) - 1
# LMDB's lock file: MDB_txninfo (two 64-byte cache lines and one reader) then 64 bytes per
# further reader.  It is mapped and written through the map, so a page of it that the file
# system has not allocated kills the process with SIGBUS when the disk is full.
LOCK_FILE_BYTES = 192 + 64 * (MAX_READERS - 1)


class MapGrown(StoreRetry):
    """The write transaction filled the map, so it was aborted (nothing of it written) and
    the map grown: run the transaction again, at once."""


# -- the data file's header ---------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    page_size: int
    last_pg: int
    txnid: int
    free_root: int
    map_size: int


def check_data_file(path: str) -> None:
    """Refuse (``StoreError``) an LMDB data file that is truncated or not LMDB 0.9's.

    ``path`` is the data file, or the store directory holding ``data.mdb``; a missing
    file passes (a new store).  Reads the two meta pages (the live one has the larger
    txnid): the file must hold every page up to its ``mm_last_pg``, except trailing
    pages that its free list holds (LMDB does not write a page freed in the transaction
    that allocated it), so that mapping it can never touch a page past its end.  A file
    too short for its meta pages is re-read for up to half a second, since a store being
    created by another process is briefly that short.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "data.mdb")
    deadline = time.monotonic() + 0.5
    while True:
        try:
            with open(path, "rb") as f:
                _check(f, path)
            return
        except FileNotFoundError:
            return
        except _TooShort:
            if time.monotonic() >= deadline:
                with open(path, "rb") as f:
                    _check(f, path, last_try=True)
                return
            time.sleep(0.05)


class _TooShort(Exception):
    """The file does not hold both meta pages (yet)."""


def _check(f, path: str, last_try: bool = False) -> None:
    size = os.fstat(f.fileno()).st_size
    meta = _live_meta(f, path, size, last_try)
    needed = (meta.last_pg + 1) * meta.page_size
    if size >= needed:
        return
    # Shorter than the header says: fine only if every page past the end is free.
    present = size // meta.page_size
    free = _free_pages(f, path, meta, present, size, needed)
    missing = [p for p in range(present, meta.last_pg + 1) if p not in free]
    if missing:
        raise StoreError(
            f"the store's data file {path} is truncated: it has {size} bytes and its header "
            f"needs {needed} ({meta.last_pg + 1} pages of {meta.page_size} bytes; page "
            f"{missing[0]}, in use, is past the end); restore the store from a backup")


def _live_meta(f, path: str, size: int, last_try: bool) -> _Meta:
    """The meta page with the larger txnid, both having been checked."""
    def bad(why: str) -> StoreError:
        return StoreError(f"the store's data file {path} is corrupt or truncated: {why} "
                          f"(it has {size} bytes); restore the store from a backup")

    head = os.pread(f.fileno(), META_END, 0)
    if len(head) < META_END:
        if not last_try:
            raise _TooShort
        raise bad("it is too short for LMDB's two meta pages" if size else "it is empty")
    problem = _meta_problem(head, 0)
    if problem:
        raise bad(problem)
    psize = _META.unpack_from(head, PAGE_HEADER)[4]
    if psize < 512 or psize > 65536 or psize & (psize - 1):
        raise bad(f"meta page 0 gives the page size {psize}")
    second = os.pread(f.fileno(), META_END, psize)
    if len(second) < META_END or size < 2 * psize:
        if not last_try:
            raise _TooShort
        raise StoreError(
            f"the store's data file {path} is truncated: it has {size} bytes and its header "
            f"needs at least {2 * psize} (two meta pages of {psize} bytes); restore the "
            f"store from a backup")
    metas = []
    for number, page in enumerate((head, second)):
        problem = _meta_problem(page, number)
        if problem:
            raise bad(problem)
        fields = _META.unpack_from(page, PAGE_HEADER)
        metas.append(_Meta(page_size=psize, last_pg=fields[-2], txnid=fields[-1],
                           free_root=fields[11], map_size=fields[3]))
    live = metas[1] if metas[1].txnid > metas[0].txnid else metas[0]
    if live.last_pg < 1:
        raise bad(f"last page {live.last_pg}")
    return live


def _meta_problem(page: bytes, number: int) -> str | None:
    flags = _PAGE.unpack_from(page)[2]
    magic, version = _META.unpack_from(page, PAGE_HEADER)[:2]
    if not flags & P_META:
        return f"page {number} is not a meta page"
    if magic != MDB_MAGIC:
        return f"meta page {number} has magic {magic:#x}, not LMDB's {MDB_MAGIC:#x}"
    if version != MDB_DATA_VERSION:
        return f"meta page {number} has format version {version}, not {MDB_DATA_VERSION}"
    return None


def _free_pages(f, path: str, meta: _Meta, present: int, size: int,
                needed: int) -> set[int]:
    """The page numbers the live free list holds (walking its B-tree by reads, not a map)."""
    psize = meta.page_size

    def fault(why: str) -> StoreError:
        return StoreError(
            f"the store's data file {path} is truncated or corrupt: it has {size} bytes and "
            f"its header needs {needed}; its free list {why}; restore the store from a "
            f"backup")

    def read(pgno: int, count: int = 1) -> bytes:
        if pgno + count > present:
            raise fault(f"has page {pgno + count - 1}, past the end")
        return os.pread(f.fileno(), psize * count, pgno * psize)

    free: set[int] = set()
    if meta.free_root == P_INVALID:
        return free
    todo, seen = [meta.free_root], set()
    while todo:
        pgno = todo.pop()
        if pgno in seen or pgno > meta.last_pg or len(seen) > meta.last_pg:
            raise fault(f"is not a tree (page {pgno})")
        seen.add(pgno)
        page = read(pgno)
        _, _, flags, lower, _ = _PAGE.unpack_from(page)
        if not flags & (P_BRANCH | P_LEAF) or flags & P_LEAF2 or lower < PAGE_HEADER:
            raise fault(f"has page {pgno} of kind {flags:#x}")
        for i in range((lower - PAGE_HEADER) >> 1):
            (at,) = struct.unpack_from("<H", page, PAGE_HEADER + 2 * i)
            if at + _NODE.size > psize:
                raise fault(f"has a node past the end of page {pgno}")
            lo, hi, nflags, ksize = _NODE.unpack_from(page, at)
            if flags & P_BRANCH:
                todo.append(lo | hi << 16 | nflags << 32)
                continue
            dsize = lo | hi << 16
            start = at + _NODE.size + ksize
            if nflags & F_BIGDATA:
                (first,) = _U64.unpack_from(page, start)
                head = read(first)
                (count,) = _PAGE_PAGES.unpack_from(head, 12)
                if not _PAGE.unpack_from(head)[2] & P_OVERFLOW or count < 1:
                    raise fault(f"has a bad overflow page {first}")
                data = read(first, count)[PAGE_HEADER:PAGE_HEADER + dsize]
            else:
                data = page[start:start + dsize]
            if len(data) < 8:
                raise fault(f"has a short record on page {pgno}")
            n = min(_U64.unpack_from(data)[0], len(data) // 8 - 1)
            free.update(struct.unpack_from(f"<{n}Q", data, 8))
    return free


# -- sizes ------------------------------------------------------------------------------


def _round_up(n: int, to: int = MAP_ALIGN) -> int:
    return -(-n // to) * to


def _can_map(extra: int) -> bool:
    """Whether this process can map ``extra`` more bytes under its address-space limit."""
    if resource is None:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return True
    try:
        probe = mmap.mmap(-1, extra + MAP_MARGIN,
                          flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)
    except (OSError, ValueError, OverflowError):
        return False
    probe.close()
    return True


def _pick_size(wanted: Iterable[int], minimum: int, current: int) -> int | None:
    """The first of ``wanted`` (at least ``minimum``) that the process can map, given that
    the ``current`` map is given up first; None if not even ``minimum`` can be."""
    for size in [*wanted, minimum]:
        size = _round_up(max(size, minimum))
        if _can_map(max(0, size - current)):
            return size
    return None


def starting_map_size(file_size: int, needed: int = 0) -> int:
    """The map a process starts with for a data file of ``file_size`` bytes whose header
    needs ``needed``: $FLOWMETAL_LMDB_MAP_SIZE if set, else half as much again as the
    file, at least ``MIN_MAP_SIZE``; less if the address-space limit demands it."""
    explicit = os.environ.get(MAP_SIZE_ENV)
    minimum = _round_up(max(file_size, needed, 1))
    if explicit:
        try:
            return max(_round_up(int(explicit)), minimum)
        except ValueError:
            raise StoreError(f"${MAP_SIZE_ENV} is {explicit!r}, not a number of bytes"
                             ) from None
    preferred = max(MIN_MAP_SIZE, minimum + minimum // 2)
    picked = _pick_size([preferred, (preferred + minimum) // 2], minimum, 0)
    return minimum if picked is None else picked


# -- errors -----------------------------------------------------------------------------

_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
_EIO_TEXT = os.strerror(errno.EIO)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _found(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return -1
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


def _disk_full(exc: BaseException, path: str) -> lmdb.Error | OSError | None:
    """The error in ``exc``'s chain that says the disk is full, if one does.  LMDB reports
    ENOSPC (``lmdb.DiskError``) when a write fails outright, and EIO when it is cut
    short, which is a full disk if there is next to no space left."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        if not isinstance(e, lmdb.Error):
            continue
        text = str(e)
        if isinstance(e, lmdb.DiskError) or any(t in text for t in _FULL_TEXTS):
            return e
        if _EIO_TEXT in text and 0 <= _free_bytes(path) < DISK_FULL_BYTES:
            return e
    return None


# -- the gate: no remap under an open transaction ----------------------------------------


class _Gate:
    """Keeps the transactions open in this process, so the map is replaced only while no
    other thread has one open (py-lmdb would invalidate them).

    Lock-free on the way in and out (a dict's item set and delete are atomic): a
    transaction is entered before the remapping thread is looked for, and the remapping
    thread is set before the transactions are looked at, so either the one sees the
    other or the other sees the one."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._live: dict[object, int] = {}  # a token per open transaction -> its thread
        self._owner: int | None = None  # the thread in an exclusive section, or waiting

    def _others(self, me: int, token: object = None) -> bool:
        return any(thread != me for key, thread in list(self._live.items()) if key is not token)

    def _holds(self, me: int, token: object) -> bool:
        return any(thread == me for key, thread in list(self._live.items()) if key is not token)

    def enter(self) -> object:
        """Count a transaction about to begin (waits while a remap is due); its token."""
        me = threading.get_ident()
        token = object()
        while True:
            self._live[token] = me
            owner = self._owner
            # A thread already holding transactions goes on (it may be what the remap
            # waits for); so does the remapping thread itself.
            if owner is None or owner == me or self._holds(me, token):
                return token
            del self._live[token]
            with self._cond:
                self._cond.notify_all()
                while self._owner not in (None, me):
                    self._cond.wait()

    def leave(self, token: object) -> None:
        """Count a transaction ended."""
        del self._live[token]
        if self._owner is not None:
            with self._cond:
                self._cond.notify_all()

    @contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Run the body once no other thread has a transaction open."""
        me = threading.get_ident()
        if self._owner == me:  # nested: already exclusive
            yield
            return
        deadline = time.monotonic() + WAIT_SECONDS
        with self._cond:
            while self._owner is not None:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise StoreUnavailable(f"cannot {what}: another thread is remapping")
            self._owner = me
            try:
                while self._others(me):
                    if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                        raise StoreUnavailable(
                            f"cannot {what}: other threads' transactions stayed open "
                            f"{WAIT_SECONDS:g} s")
            except BaseException:
                self._owner = None
                self._cond.notify_all()
                raise
        try:
            yield
        finally:
            with self._cond:
                self._owner = None
                self._cond.notify_all()


# -- the environment --------------------------------------------------------------------

_OPEN: dict[str, Environment] = {}
_OPEN_LOCK = threading.Lock()


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _prepare_lock_file(directory: str) -> None:
    """Allocate LMDB's lock file on disk (creating it if need be), so that writing it
    through its map cannot die of SIGBUS on a full disk; a full disk is StoreUnavailable.
    Only ever called while this process has no environment open on the directory (closing
    a descriptor of the lock file drops all of the process's locks on it)."""
    path = os.path.join(directory, "lock.mdb")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return  # read-only file system or directory: LMDB will say what is wrong
    try:
        st = os.fstat(fd)
        size = max(st.st_size, LOCK_FILE_BYTES)
        if st.st_blocks * 512 < size:
            os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreUnavailable(
                f"the disk holding the store at {directory} is full: {exc.strerror}") from None
        # fallocate not supported here: LMDB creates the file as it always has
    finally:
        os.close(fd)


class Environment:
    """One LMDB environment (a store directory) and its named databases, shared by every
    user of that directory in this process.  Use ``Environment.open``.

    ``dbs`` maps each table name to its database handle; the dict is updated in place
    when the environment is reopened, so look handles up in it per transaction rather
    than keeping them.  ``map_grows`` and ``map_adoptions`` count the map's growths after
    a full map and its adoptions of a size grown by another process.
    """

    def __init__(self, path: str, sync: bool):
        self.path = path
        self.data_path = os.path.join(path, "data.mdb")
        self.sync = sync
        self.tables: tuple[str, ...] = ()
        self.optional: frozenset[str] = frozenset()
        self.dbs: dict[str, Any] = {}
        self.map_grows = 0
        self.map_adoptions = 0
        self._env: lmdb.Environment | None = None
        self._readonly = True
        self._map_size = 0
        self._file_id: tuple[int, int] | None = None
        self._gate = _Gate()
        self._lock = threading.RLock()  # opening tables, upgrading

    # opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, tables: Iterable[str], sync: bool = True,
             create: bool = True, optional: Iterable[str] = ()) -> Environment:
        """The environment of the store directory ``path`` with the named databases
        ``tables``, opened once per process (a later open with other ``sync`` gets the
        first one's).  ``create=False`` refuses (``StoreError``) a directory without a
        store or with a table missing; ``create=True`` makes them, which needs the
        writer's lock.  Tables named in ``optional`` (added in later versions of the store
        format) may be missing: they are made by the first write.  Opening an existing store
        never takes the writer's lock.  The data
        file is checked first (``check_data_file``); a full disk while creating is
        ``StoreUnavailable``."""
        path = os.path.abspath(path)
        tables = tuple(tables)
        with _OPEN_LOCK:
            env = _OPEN.get(path)
            if env is not None and env._file_id != _file_id(env.data_path):
                env = None  # the store was deleted (and perhaps made anew) meanwhile
            if env is None:
                env = cls(path, sync)
                env.optional = frozenset(optional)
                env._start(tables, create, lock_file_free=path not in _OPEN)
                _OPEN[path] = env
            else:
                env._add_tables(tables)
            return env

    def _start(self, tables: tuple[str, ...], create: bool, lock_file_free: bool) -> None:
        existed = os.path.exists(self.data_path)
        if not existed:
            if not create:
                raise StoreError(f"no store at {self.path}")
            os.makedirs(self.path, exist_ok=True)
        else:
            check_data_file(self.data_path)
        self.tables = tables
        if lock_file_free:  # (an environment of this process on it would lose its locks)
            _prepare_lock_file(self.path)
        try:
            self._map_size = self._first_map_size()
            self._open_lmdb(readonly=existed)
            if self._readonly:
                missing = self._open_tables_readonly(tables)
                if missing and not create:
                    raise StoreError(f"the store at {self.path} lacks the tables "
                                     f"{', '.join(missing)}")
                if missing:
                    self._reopen(readonly=False, create=True)
            else:
                self._open_tables_writing(tables, create)
        except BaseException:
            self._close()
            if not existed:
                self._remove_unborn()
            raise
        self._file_id = _file_id(self.data_path)

    def _first_map_size(self) -> int:
        try:
            file_size = os.path.getsize(self.data_path)
        except FileNotFoundError:
            file_size = 0
        return starting_map_size(file_size)

    def _remove_unborn(self) -> None:
        """Remove a data file this process created but could not initialize (its disk
        full), which would otherwise be refused as truncated from then on."""
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if os.path.getsize(self.data_path) < 2 * mmap.PAGESIZE:
                os.unlink(self.data_path)

    def _open_lmdb(self, readonly: bool) -> None:
        try:
            self._env = lmdb.open(
                self.path, map_size=self._map_size, max_dbs=len(self.tables) + 1,
                sync=self.sync, metasync=self.sync, readahead=False,
                max_readers=MAX_READERS, readonly=readonly, create=not readonly)
        except lmdb.Error as exc:
            self._env = None
            if _disk_full(exc, self.path):
                raise StoreUnavailable(
                    f"the disk holding the store at {self.path} is full: {exc}") from None
            denied = next((os.strerror(e) for e in (errno.EROFS, errno.EACCES, errno.EPERM)
                           if str(exc).endswith(os.strerror(e))), None)
            if denied and not readonly:
                raise StoreReadOnly(f"the store at {self.path} cannot be written "
                                    f"({denied})") from None
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from None
        self._readonly = readonly
        self._map_size = self._env.info()["map_size"]

    def _open_tables_readonly(self, tables: Iterable[str]) -> list[str]:
        """Open the named databases of a read-only environment (py-lmdb does so in a read
        transaction and keeps the handles); the names of those missing."""
        assert self._env is not None
        missing = []
        for name in tables:
            try:
                self.dbs[name] = self._env.open_db(name.encode(), create=False)
            except lmdb.NotFoundError:
                if name not in self.optional:
                    missing.append(name)
        return missing

    def _open_tables_writing(self, tables: Iterable[str], create: bool) -> None:
        """Open (and with ``create``, make) the named databases in one write transaction:
        py-lmdb discards handles opened in a read transaction of a read-write
        environment, so this is the only way there."""
        assert self._env is not None
        tables = list(tables)
        try:
            with self._env.begin(write=True) as txn:
                handles = {name: self._env.open_db(name.encode(), txn=txn,
                                                   create=create or name in self.optional)
                           for name in tables}
        except lmdb.NotFoundError:
            raise StoreError(f"the store at {self.path} lacks some of the tables "
                             f"{', '.join(tables)}") from None
        except lmdb.Error as exc:
            if _disk_full(exc, self.path):
                raise StoreUnavailable(
                    f"the disk holding the store at {self.path} is full: {exc}") from None
            raise
        self.dbs.update(handles)

    def _add_tables(self, tables: tuple[str, ...]) -> None:
        """Check that a later open asks for the tables this one was opened with."""
        new = [name for name in tables if name not in self.dbs]
        if new:
            raise StoreError(f"the store at {self.path} is open in this process for the "
                             f"tables {', '.join(self.tables)}, not {', '.join(new)}")

    def _close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def _reopen(self, readonly: bool, create: bool = False) -> None:
        """Close and open the environment again (read-only or read-write), with its tables
        and the current map size.  Run while exclusive."""
        self._close()
        self.dbs.clear()  # the old handles are dead; users look them up per transaction
        self._open_lmdb(readonly)
        if readonly:
            missing = self._open_tables_readonly(self.tables)
            if missing:
                raise StoreError(f"the store at {self.path} lacks the tables "
                                 f"{', '.join(missing)}")
        else:
            self._open_tables_writing(self.tables, create)

    def _upgrade(self) -> None:
        """Reopen a read-only environment read-write (the first write does this)."""
        with self._lock, self._gate.exclusive("reopen the store for writing"):
            if self._readonly:
                self._reopen(readonly=False)

    # the map --------------------------------------------------------------------------

    def _set_map_size(self, size: int) -> None:
        """Replace the map (while exclusive); if LMDB cannot, reopen at the old size."""
        assert self._env is not None
        old = self._map_size
        try:
            self._env.set_mapsize(size)
        except lmdb.Error as exc:
            # py-lmdb's environment is closed after a failed remap: open it again.
            self._map_size = old
            self._reopen(self._readonly)
            raise StoreError(f"cannot map {size} bytes of the store at {self.path} "
                             f"(address space, ulimit -v): {exc}") from None
        self._map_size = self._env.info()["map_size"]

    def _used_bytes(self) -> int:
        assert self._env is not None
        info = self._env.info()
        return (info["last_pgno"] + 1) * self._env.stat()["psize"]

    def _grow(self, failed_at: int) -> None:
        """Grow the map after a write found the map of ``failed_at`` bytes full."""
        with self._gate.exclusive("grow the map"):
            current = self._map_size
            if current > failed_at:
                return  # another thread grew it meanwhile
            needed = max(self._used_bytes(), current + MAP_ALIGN)
            size = _pick_size([2 * current, current + current // 2, current + current // 4,
                               current + 16 * MiB], needed, current)
            if size is None:
                raise StoreError(
                    f"the store at {self.path} needs a map larger than its {current} bytes "
                    f"and this process cannot address more (ulimit -v)")
            self._set_map_size(size)
            self.map_grows += 1

    def _adopt(self) -> None:
        """Map as much as another process has grown the store to (MDB_MAP_RESIZED).  The
        size is worked out from the pages in use rather than taken from the file
        (``set_mapsize(0)``), which may record a huge map of an older Flowmetal."""
        with self._gate.exclusive("adopt the grown map"):
            current = self._map_size
            needed = self._used_bytes()
            if needed <= current:
                return  # another thread adopted it meanwhile
            size = _pick_size([needed + needed // 2, needed + needed // 4], needed, current)
            if size is None:
                raise StoreError(
                    f"the store at {self.path} has grown to {needed} bytes, more than this "
                    f"process can address (ulimit -v)")
            self._set_map_size(size)
            self.map_adoptions += 1

    def _recover(self) -> None:
        """Reopen after LMDB's MDB_PANIC (a failed write of a meta page), or after a
        reopen failed."""
        with self._gate.exclusive("reopen the store after a fatal error"):
            self._reopen(self._readonly)

    # transactions ---------------------------------------------------------------------

    def _begin(self, write: bool) -> tuple[lmdb.Transaction, int, object]:
        """Begin a transaction, kept by the gate: the transaction, the map size it began
        with and its gate token."""
        for _ in range(5):
            token = self._gate.enter()
            size, env = self._map_size, self._env
            try:
                if env is None:  # an earlier reopen failed
                    raise lmdb.PanicError("the environment is closed")
                return env.begin(write=write, buffers=False), size, token
            except lmdb.MapResizedError:
                self._gate.leave(token)
                self._adopt()
            except lmdb.PanicError:
                self._gate.leave(token)
                self._recover()
            except BaseException:
                self._gate.leave(token)
                raise
        raise StoreUnavailable(f"the store at {self.path} kept changing size; try again")

    def read(self) -> AbstractContextManager[lmdb.Transaction]:
        """A read-only snapshot: a context manager giving the raw ``lmdb.Transaction``
        (``buffers=False``).  Never waits for a writer, only for this process's own
        remaps of the map."""
        return _Reading(self)

    def write(self) -> AbstractContextManager[lmdb.Transaction]:
        """A write transaction (the raw ``lmdb.Transaction``), committed when the body
        ends without an exception.  If the body or the commit fails, nothing is written,
        and: a full map raises ``MapGrown`` once the map is grown (run the transaction
        again — or use ``run_write``); a full disk raises ``StoreUnavailable``; LMDB's
        fatal error reopens the environment and raises ``StoreUnavailable``.  Other
        exceptions pass through.

        The first write of a process reopens the environment read-write, in a write
        transaction of its own: while that waits for the writer's lock, this process's
        other threads wait too."""
        return _Writing(self)

    def _failed(self, exc: BaseException, size: int) -> None:
        """Turn a failed write transaction's fault into a store error, or return."""
        if _found(exc, lmdb.MapFullError):
            self._grow(size)
            raise MapGrown(f"the transaction filled the {size}-byte map of the store at "
                           f"{self.path}; the map has grown: run it again") from None
        full = _disk_full(exc, self.path)
        if full is not None:
            raise StoreUnavailable(
                f"the disk holding the store at {self.path} is full ({full}); nothing of "
                f"the transaction was written") from None
        if _found(exc, lmdb.PanicError):
            self._recover()
            raise StoreUnavailable(f"the store at {self.path} had a fatal error and was "
                                   f"reopened; nothing of the transaction was written"
                                   ) from None

    def run_write(self, fn: Callable[[lmdb.Transaction], T], attempts: int = 8) -> T:
        """``fn(txn)`` in a write transaction, committed; run again (in a new transaction)
        each time it fills the map and the map has grown, up to ``attempts`` times.
        ``fn`` must do nothing that a retry would repeat outside the transaction."""
        for _ in range(attempts - 1):
            try:
                with self.write() as txn:
                    return fn(txn)
            except MapGrown:
                continue
        with self.write() as txn:
            return fn(txn)

    # sizes ----------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes of the data file."""
        return os.path.getsize(self.data_path)

    def map_size(self) -> int:
        """Bytes this process maps of the data file (the most it can hold without
        growing the map)."""
        return self._map_size

    @property
    def readonly(self) -> bool:
        """Whether the environment is still open read-only (no write has begun yet)."""
        return self._readonly


class _Writing:
    """``Environment.write()``: a class rather than a generator, like ``_Reading``."""

    __slots__ = ("env", "txn", "size", "token")

    def __init__(self, env: Environment):
        self.env = env

    def __enter__(self) -> lmdb.Transaction:
        env = self.env
        if env._readonly:
            env._upgrade()
        self.txn, self.size, self.token = env._begin(write=True)
        return self.txn

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            try:
                self.txn.commit()
            except BaseException as failed:
                self._abort(failed)
                raise
            self.env._gate.leave(self.token)
            return False
        self._abort(exc)
        return False  # the body's exception goes on

    def _abort(self, exc: BaseException) -> None:
        try:
            self.txn.abort()  # (nothing to do after a failed commit)
        finally:
            self.env._gate.leave(self.token)
        self.env._failed(exc, self.size)


class _Reading:
    """``Environment.read()``: a class rather than a generator, which costs 1 µs more."""

    __slots__ = ("env", "txn", "token")

    def __init__(self, env: Environment):
        self.env = env

    def __enter__(self) -> lmdb.Transaction:
        self.txn, _, self.token = self.env._begin(write=False)
        return self.txn

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.txn.abort()
        finally:
            self.env._gate.leave(self.token)
