"""Faults of an LMDB store, injected for real: a stopped writer, a truncated or corrupt data
file, an address-space limit, a full disk (see flowmetal/store/lmdb_env.py).

LMDB forbids opening one environment twice in a process, and several faults kill a
process (SIGBUS), so the stores are opened in subprocesses; the test process only
prepares files and reads the data file's header.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time

import lmdb
import pytest

from flowmetal.store import lmdb_env
from flowmetal.store.base import StoreError

TABLES = ("meta", "items", "log")
LIMIT = 2 << 30  # RLIMIT_AS for the address-space tests: 2 GiB

PRELUDE = """
import os, signal, sys, time
from flowmetal.store.base import StoreError, StoreUnavailable
from flowmetal.store.lmdb_env import Environment, MapGrown
TABLES = {tables!r}
"""


def script(code: str, limit: int | None = None) -> str:
    """The program running ``code`` after PRELUDE; ``limit`` is its RLIMIT_AS."""
    head = PRELUDE.format(tables=TABLES)
    if limit:
        head = ("import resource\n"
                f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n" + head)
    return head + textwrap.dedent(code)


def run(code: str, *args: str, timeout: float = 60, limit: int | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a new Python process, with ``env`` added to the environment."""
    environ = {k: v for k, v in os.environ.items() if k != lmdb_env.MAP_SIZE_ENV}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-c", script(code, limit), *args],
                          capture_output=True, text=True, timeout=timeout, env=environ)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


MAKE_STORE = """
path, n = sys.argv[1], int(sys.argv[2])
env = Environment.open(path, TABLES)
with env.write() as txn:
    txn.put(b"format", b"test/1", db=env.dbs["meta"])
for i in range(n):
    with env.write() as txn:
        for j in range(20):
            txn.put(b"%06d" % (i * 20 + j), os.urandom(700), db=env.dbs["items"])
print("made")
"""

READ_ALL = """
env = Environment.open(sys.argv[1], TABLES, create=sys.argv[2] == "create")
with env.read() as txn:
    fmt = txn.get(b"format", db=env.dbs["meta"])
    count = sum(len(v) > 0 for _, v in txn.cursor(db=env.dbs["items"]))
print(fmt and fmt.decode(), count)
"""


# -- the data file's header ---------------------------------------------------------------


def _churn(env: lmdb.Environment, db, rng: random.Random) -> None:
    """One write transaction that puts values and deletes some of them again."""
    with env.begin(write=True) as txn:
        keys = [b"%06d" % rng.randrange(100000) for _ in range(rng.randint(1, 200))]
        for key in keys:
            txn.put(key, os.urandom(rng.choice([10, 100, 1000, 5000, 20000])), db=db)
        for key in keys[:rng.randint(0, len(keys))]:
            txn.delete(key, db=db)


def _pages_in_use(env: lmdb.Environment, db, meta_page: bytes) -> int:
    with env.begin() as txn:
        stats = [env.stat(), txn.stat(db)]
    free_db = struct.unpack_from("<IHHQQQ", meta_page, 40)[3:]  # mm_dbs[0]'s page counts
    return sum(s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"] for s in stats) + \
        sum(free_db)


def test_meta_layout_is_lmdbs(tmp_path):
    """The meta fields read from the file agree with what LMDB reports, and the free list
    read from the file accounts for every page that is not in use."""
    env = lmdb.open(str(tmp_path), map_size=256 << 20, max_dbs=2)
    db = env.open_db(b"items")
    rng = random.Random(3)
    data = str(tmp_path / "data.mdb")
    short = 0
    for _ in range(120):
        _churn(env, db, rng)
        info, psize = env.info(), env.stat()["psize"]
        with open(data, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            meta = lmdb_env._live_meta(f, data, size, last_try=True)
            free = lmdb_env._free_pages(f, data, meta, size // psize, size, 0)
            live_page = os.pread(f.fileno(), psize, psize * (info["last_txnid"] % 2))
        assert (meta.page_size, meta.last_pg, meta.txnid, meta.map_size) == \
            (psize, info["last_pgno"], info["last_txnid"], info["map_size"])
        # the two meta pages, the pages of the trees, the free pages: every page once
        assert 2 + _pages_in_use(env, db, live_page) + len(free) == meta.last_pg + 1
        if size < (meta.last_pg + 1) * psize:
            short += 1  # LMDB did not write pages freed in the transaction that made them
            lmdb_env.check_data_file(data)  # and the file is fine
    assert short, "the churn never left the file shorter than its last page"
    env.close()


def _made_store(tmp_path, n: int = 40) -> str:
    origin = str(tmp_path / "origin")
    ok(run(MAKE_STORE, origin, str(n)))
    return origin


def _copy(origin: str, where: str, cut: int | None = None,
          patch: tuple[int, bytes] | None = None) -> str:
    os.makedirs(where)
    with open(os.path.join(origin, "data.mdb"), "rb") as f:
        data = f.read()
    if cut is not None:
        data = data[:cut]
    if patch is not None:
        at, new = patch
        data = data[:at] + new + data[at + len(new):]
    with open(os.path.join(where, "data.mdb"), "wb") as f:
        f.write(data)
    return where


def test_truncated_data_file_is_refused_not_mapped(tmp_path):
    origin = _made_store(tmp_path)
    size = os.path.getsize(os.path.join(origin, "data.mdb"))
    page = 4096
    assert size > 40 * page
    # Today's way (mapping it as it is) dies of SIGBUS on a file cut in the middle.
    cut = _copy(origin, str(tmp_path / "raw"), size // 2)
    raw = run("""
        import lmdb
        env = lmdb.open(sys.argv[1], max_dbs=4, readonly=True, map_size=64 << 20)
        with env.begin() as txn:
            db = env.open_db(b"items", txn=txn, create=False)
            print(sum(len(v) for _, v in txn.cursor(db=db)))
        """, cut)
    assert raw.returncode == -signal.SIGBUS, (raw.returncode, raw.stderr)

    for n, cut in enumerate([0, 100, page // 2, page + 100, 2 * page, 3 * page,
                             size // 3, size // 2, size - 8 * page]):
        where = _copy(origin, str(tmp_path / f"cut{n}"), cut)
        for mode in ("create", "exists"):
            proc = run(READ_ALL, where, mode)
            assert proc.returncode == 1, (cut, proc.returncode, proc.stdout, proc.stderr)
            last = proc.stderr.strip().splitlines()[-1]
            assert last.startswith("flowmetal.store.base.StoreError: the store's data file")
            assert os.path.join(where, "data.mdb") in last, last
            assert "truncated" in last and f"it has {cut} bytes" in last, last
            if cut >= 2 * page:
                assert "its header needs" in last, last
        assert os.path.getsize(os.path.join(where, "data.mdb")) == cut  # left as it was

    # Whole, it opens (also read-only, also after the check of a copy without lock file).
    assert ok(run(READ_ALL, _copy(origin, str(tmp_path / "whole")), "exists")) == \
        "test/1 800\n"
    assert ok(run(READ_ALL, origin, "exists")) == "test/1 800\n"


def test_corrupt_meta_pages_are_refused(tmp_path):
    origin = _made_store(tmp_path, 2)
    for n, (at, new, why) in enumerate([
            (16, b"\0\0\0\0", "magic 0x0"),                   # meta page 0's mm_magic
            (4096 + 16, b"\xde\xc0\xad\xde", "magic 0xdeadc0de"),  # meta page 1's
            (20, struct.pack("<I", 999), "format version 999"),
            (10, b"\0\0", "page 0 is not a meta page"),
            (40, struct.pack("<I", 1000), "page size 1000")]):
        where = _copy(origin, str(tmp_path / f"bad{n}"), patch=(at, new))
        proc = run(READ_ALL, where, "exists")
        assert proc.returncode == 1, (why, proc.returncode, proc.stderr)
        assert "corrupt" in proc.stderr and why in proc.stderr, proc.stderr
    with pytest.raises(StoreError, match="it is empty"):
        lmdb_env.check_data_file(_copy(origin, str(tmp_path / "empty"), 0))
    lmdb_env.check_data_file(str(tmp_path / "missing"))  # a new store: nothing to check


def _wired() -> bool:
    with open(os.path.join(os.path.dirname(lmdb_env.__file__), "lmdb.py")) as f:
        return "lmdb_env" in f.read()


@pytest.mark.skipif(not _wired(),
                    reason="LmdbStore does not open its environment through lmdb_env yet")
def test_cli_refuses_a_truncated_store(tmp_path):
    store = str(tmp_path / "store")
    ok(subprocess.run([sys.executable, "-c", "import sys\n"
                       "from flowmetal.store.lmdb import LmdbStore\n"
                       "LmdbStore(sys.argv[1])", store],
                      capture_output=True, text=True, timeout=120))
    data = os.path.join(store, "data.mdb")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    proc = subprocess.run([sys.executable, "-m", "flowmetal", "--store", store, "tasks"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode > 0, (proc.returncode, proc.stderr)
    assert "truncated" in proc.stdout + proc.stderr


# -- a stopped writer -------------------------------------------------------------------


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_readers_do_not_wait_for_a_stopped_writer(tmp_path):
    store = str(tmp_path)
    ok(run(MAKE_STORE, store, "2"))
    holder = subprocess.Popen([sys.executable, "-c", script("""
        env = Environment.open(sys.argv[1], TABLES)
        with env.write() as txn:
            txn.put(b"uncommitted", b"x", db=env.dbs["items"])
            print("holding", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        """), store], stdout=subprocess.PIPE, text=True)
    waiting = []
    try:
        assert holder.stdout.readline() == "holding\n"
        deadline = time.monotonic() + 10
        while not _stopped(holder.pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # The writer's lock is held: a writer waits, and so does opening the tables the
        # old way (env.open_db takes a write transaction).
        for code in ["""
                env = Environment.open(sys.argv[1], TABLES)
                with env.write() as txn:
                    txn.put(b"other", b"y", db=env.dbs["items"])
                """, """
                import lmdb
                env = lmdb.open(sys.argv[1], max_dbs=4, map_size=64 << 20)
                env.open_db(b"items")
                """]:
            waiting.append(subprocess.Popen([sys.executable, "-c", script(code), store],
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))
        time.sleep(1.5)
        assert [p.poll() for p in waiting] == [None, None]
        # Readers open the store and read at once, whether they may create or not.
        for mode in ("exists", "create"):
            started = time.monotonic()
            assert ok(run(READ_ALL, store, mode, timeout=20)) == "test/1 40\n"
            assert time.monotonic() - started < 5
    finally:
        holder.kill()  # SIGKILL ends a stopped process too
        holder.wait()
    # The dead writer's lock passes to the waiting writer, which commits.
    assert waiting[0].wait(timeout=20) == 0
    for proc in waiting[1:]:
        proc.kill()
        proc.wait()
    assert ok(run("""
        env = Environment.open(sys.argv[1], TABLES)
        with env.read() as txn:
            print(txn.get(b"other", db=env.dbs["items"]),
                  txn.get(b"uncommitted", db=env.dbs["items"]))
        """, store)) == "b'y' None\n"


# -- the map ----------------------------------------------------------------------------


def test_the_64_gib_map_fails_under_an_address_space_limit(tmp_path):
    """The fault that made the map start small."""
    proc = run("""
        import lmdb
        try:
            lmdb.open(sys.argv[1], map_size=64 << 30)
        except lmdb.Error as exc:
            print(type(exc).__name__)
        """, str(tmp_path), limit=LIMIT)
    assert ok(proc) == "MemoryError\n"


def test_map_grows_under_an_address_space_limit(tmp_path):
    store = str(tmp_path / "store")
    out = ok(run("""
        env = Environment.open(sys.argv[1], TABLES, sync=False)
        start = env.map_size()
        assert start == 64 << 20, start
        db = env.dbs["items"]
        for i in range(200):  # 100 MB in transactions of 500 kB
            env.run_write(lambda txn, i=i: [txn.put(b"%03d.%d" % (i, j), os.urandom(100_000),
                                                    db=db) for j in range(5)])
        # one transaction larger than the map was when it began
        env.run_write(lambda txn: [txn.put(b"big.%d" % j, os.urandom(1_000_000), db=db)
                                   for j in range(150)])
        with env.read() as txn:
            total = sum(len(v) for _, v in txn.cursor(db=db))
        print(total, env.map_grows, env.map_size() > 250 << 20)
        """, store, limit=LIMIT, timeout=300))
    total, grows, bigger = out.split()
    assert int(total) == 250_000_000 and int(grows) >= 2 and bigger == "True"
    # A new process under the limit opens it (its map starts at the file's size and a
    # half again) and reads it all.
    assert ok(run("""
        env = Environment.open(sys.argv[1], TABLES, create=False)
        with env.read() as txn:
            print(sum(len(v) for _, v in txn.cursor(db=env.dbs["items"])))
        """, store, limit=LIMIT)) == "250000000\n"


def test_write_raises_map_grown_for_the_caller_to_retry(tmp_path):
    out = ok(run("""
        env = Environment.open(sys.argv[1], TABLES, sync=False)
        db = env.dbs["items"]
        start = env.map_size()
        with env.write() as txn:
            txn.put(b"before", b"1", db=db)
        try:
            with env.write() as txn:
                txn.put(b"partial", b"x", db=db)
                for j in range(25):
                    txn.put(b"v%d" % j, os.urandom(100_000), db=db)
        except MapGrown as exc:
            print("grown", isinstance(exc, StoreUnavailable), env.map_size() > start)
        with env.read() as txn:  # nothing of it was written
            print(txn.get(b"before", db=db), txn.get(b"partial", db=db))
        with env.write() as txn:  # the retry fits
            txn.put(b"partial", b"x", db=db)
            for j in range(25):
                txn.put(b"v%d" % j, os.urandom(100_000), db=db)
        with env.read() as txn:
            print(txn.get(b"partial", db=db), sum(1 for _ in txn.cursor(db=db)))
        """, str(tmp_path), env={lmdb_env.MAP_SIZE_ENV: str(2 << 20)}))
    assert out == "grown True True\nb'1' None\nb'x' 27\n"


def test_remaps_wait_for_other_threads_transactions(tmp_path):
    """Reopening for writing and growing the map replace the map under every transaction
    of the process: reader threads see neither (py-lmdb would have invalidated their
    transactions)."""
    store = str(tmp_path)
    ok(run(MAKE_STORE, store, "1"))
    out = ok(run("""
        import threading
        env = Environment.open(sys.argv[1], TABLES, sync=False)
        assert env.readonly
        errors, reads, stop = [], [0], threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    with env.read() as txn:
                        first = txn.get(b"format", db=env.dbs["meta"])
                        time.sleep(0.0005)
                        assert txn.get(b"format", db=env.dbs["meta"]) == first == b"test/1"
                    reads[0] += 1
                except Exception as exc:
                    errors.append(repr(exc))

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for thread in threads:
            thread.start()
        for i in range(60):  # 60 MB, from a 4 MiB map
            env.run_write(lambda txn, i=i: [txn.put(b"%d.%d" % (i, j), os.urandom(100_000),
                                                    db=env.dbs["items"]) for j in range(10)])
        stop.set()
        for thread in threads:
            thread.join()
        print(env.readonly, env.map_grows >= 3, errors[:3], reads[0] > 100)
        """, store, env={lmdb_env.MAP_SIZE_ENV: str(4 << 20)}, timeout=120))
    assert out == "False True [] True\n"


SERVE = """
import json
env = Environment.open(sys.argv[1], TABLES, sync=False)  # read-only until it writes
for line in sys.stdin:
    op, prefix, n = json.loads(line)
    if op == "write":
        for i in range(n):
            env.run_write(lambda txn, i=i: txn.put(b"%s.%04d" % (prefix.encode(), i),
                                                   os.urandom(1_000_000), db=env.dbs["items"]))
        reply = n
    else:
        with env.read() as txn:
            reply = sum(len(txn.get(b"%s.%04d" % (prefix.encode(), i), db=env.dbs["items"])
                            or b"") for i in range(n))
    print(json.dumps([reply, env.map_grows, env.map_adoptions, env.map_size()]), flush=True)
"""


def test_two_processes_grow_the_same_store(tmp_path):
    """Each grows the map and adopts what the other has grown, under an address-space
    limit, on a store whose header records today's 64 GiB map (set_mapsize(0) would map
    that)."""
    store = str(tmp_path)
    old = lmdb.open(store, map_size=64 << 30, max_dbs=len(TABLES) + 1)
    for name in TABLES:
        old.open_db(name.encode())
    old.close()
    procs = [subprocess.Popen([sys.executable, "-c", script(SERVE, LIMIT), store],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]

    def ask(proc, *command):
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, "the process died"
        return json.loads(line)

    a, b = procs
    try:
        ask(a, "read", "a", 0)
        ask(b, "read", "a", 0)  # both open, with small maps
        assert ask(a, "write", "a", 120)[1] >= 1  # 120 MB: A grows its map
        reply = ask(b, "read", "a", 120)  # B adopts A's
        assert reply[0] == 120_000_000 and reply[2] >= 1, reply
        assert ask(b, "write", "b", 150)[0] == 150  # B grows it further
        reply = ask(a, "read", "b", 150)
        assert reply[0] == 150_000_000 and reply[2] >= 1, reply
        ask(a, "write", "a2", 20)
        ask(b, "write", "b2", 20)
        assert ask(a, "read", "b2", 20)[0] == ask(b, "read", "a2", 20)[0] == 20_000_000
        for proc in procs:
            assert ask(proc, "read", "a", 120)[3] < LIMIT
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=30)
    assert [proc.returncode for proc in procs] == [0, 0]


# -- a full disk ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs."""
    where = tmp_path / "disk"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield str(where)
    finally:
        if subprocess.run(["umount", str(where)]).returncode != 0:
            subprocess.run(["umount", "-l", str(where)])


FULL_DISK = """
disk = sys.argv[1]
store, filler = os.path.join(disk, "store"), os.path.join(disk, "filler")
env = Environment.open(store, TABLES)
db = env.dbs["items"]
with env.write() as txn:
    for i in range(100):
        txn.put(b"old%03d" % i, b"o" * 1000, db=db)

def fill(leave):
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\\0" * 65536)
        except OSError:
            pass
    if leave:
        os.truncate(filler, os.path.getsize(filler) - leave)

def attempt(tag):
    try:
        with env.write() as txn:
            for i in range(400):
                txn.put(b"%s%03d" % (tag, i), os.urandom(3000), db=db)
        return "committed"
    except StoreUnavailable as exc:
        assert "full" in str(exc), exc
        return type(exc).__name__

def intact(tag):
    with env.read() as txn:
        old = all(txn.get(b"old%03d" % i, db=db) == b"o" * 1000 for i in range(100))
        new = sum(txn.get(b"%s%03d" % (tag, i), db=db) is not None for i in range(400))
    return old, new

fill(0)  # no space at all: LMDB says ENOSPC
print(attempt(b"a"), *intact(b"a"))
os.unlink(filler)
fill(100_000)  # less than the transaction needs: LMDB's write is cut short (EIO)
print(attempt(b"b"), *intact(b"b"))
try:  # a new store on the full disk is refused, not a SIGBUS
    Environment.open(os.path.join(disk, "new"), TABLES)
except StoreUnavailable as exc:
    print("new store:", "full" in str(exc))
os.unlink(filler)
print(attempt(b"c"), *intact(b"c"))
new = Environment.open(os.path.join(disk, "new"), TABLES)
with new.write() as txn:
    txn.put(b"k", b"v", db=new.dbs["items"])
print("new store now:", new.size_bytes() > 0)
"""


def test_a_full_disk_is_unavailable_and_passes(small_disk):
    out = ok(run(FULL_DISK, small_disk))
    assert out.splitlines() == [
        "StoreUnavailable True 0",
        "StoreUnavailable True 0",
        "new store: True",
        "committed True 400",
        "new store now: True",
    ]
    # Another process reads the store, which the failed commits left whole.
    assert ok(run(READ_ALL, os.path.join(small_disk, "store"), "exists")) == "None 500\n"
