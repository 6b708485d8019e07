"""Faults of an LMDB store seen from the command line, injected for real: a huge value,
a writer stopped while it holds the write lock, a full disk, undecodable records, killed
and stopped workers holding leases, a truncated data file.

Every command is the real CLI in its own process (``python -m flowmetal``); the test
process opens a store only to read it or to damage a record on purpose.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cbor2
import pytest

from flowmetal.runtime.records import result_value
from flowmetal.store import open_store
from flowmetal.store.engine import columns

from .cli_helpers import env, fm, ok, popen

TIMEOUT = 30
PROMPT = 5.0  # seconds within which a read-only command must answer


def timed(store: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    r = fm(store, *args)
    return r, time.monotonic() - started


def program(where: Path, name: str, source: str) -> str:
    (where / name).write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return name


def start(store: Path, name: str) -> str:
    return ok(fm(store, "start", name)).strip()


def detail(store: Path, task_id: str) -> dict:
    return json.loads(ok(fm(store, "show", task_id, "--json")))


def wait_for(test, seconds: float = 10, what: str = "the condition"):
    """Poll ``test()`` until it returns something true; that."""
    deadline = time.monotonic() + seconds
    while True:
        value = test()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def term(p: subprocess.Popen) -> int:
    """SIGTERM a worker process: it commits what it ran, lets go, exits 0."""
    p.send_signal(signal.SIGTERM)
    return p.wait(TIMEOUT)


# -- 7. a huge value ----------------------------------------------------------------------

BIG = 1 << 524_000  # near the largest integer (limits.MAX_INT_BITS)
BIG_TEXT = "#<integer of 524,001 bits>"


def test_a_huge_value_does_not_freeze_the_store(tmp_path, procs):
    store = tmp_path / "store"
    program(tmp_path, "big.fm", """
        (def big (bit-shift-left 1 524000))
        (let [pair [big (str "x" 1)]]
          (dotimes [i 12] (println "tick" i) (sleep 0.5))
          (count pair))
        big
        """)
    run = popen(procs, store, "run", "big.fm")
    seen_unfinished = 0
    while run.poll() is None:
        if not (store / "data.mdb").exists():
            time.sleep(0.02)
            continue
        r, took = timed(store, "tasks", "--json")
        assert r.returncode == 0, r.stderr
        assert took < PROMPT, f"flowmetal tasks took {took:.1f} s while the run went on"
        rows = json.loads(r.stdout) if r.stdout.startswith("[") else []
        if rows and rows[0]["status"] not in ("done", "failed") and run.poll() is None:
            seen_unfinished += 1
            # The same while the task holds the value in a local: show describes it.
            r, took = timed(store, "show", rows[0]["id"])
            assert r.returncode == 0 and took < PROMPT, (took, r.stderr)
            assert len(r.stdout) < 20_000
    out, err = run.communicate(timeout=TIMEOUT)
    assert (run.returncode, err) == (0, ""), err
    assert out == "".join(f"tick {i}\n" for i in range(12))
    assert seen_unfinished >= 2, "the run ended before the listing could overlap it"

    (row,) = json.loads(ok(fm(store, "tasks", "--json")))
    task_id = row["id"]
    assert row["status"] == "done"
    assert result_value(open_store(str(store)).get(task_id)) == BIG  # stored whole

    for args in (["show", task_id], ["show", task_id, "--json"], ["log", task_id],
                 ["log", task_id, "--json"]):
        r, took = timed(store, *args)
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
        assert took < PROMPT, (args, took)
        assert BIG_TEXT in r.stdout and len(r.stdout) < 20_000, (args, r.stdout[:500])


def test_show_describes_huge_values_inside_collections(tmp_path, procs):
    store = tmp_path / "store"
    program(tmp_path, "hold.fm", """
        (let [big (bit-shift-left 1 500000)
              held {:big [big 1/3] :list (list big) :text (apply str (repeat 100000 "y"))}]
          (receive :timeout 600)
          (count held))
        """)
    task_id = start(store, "hold.fm")
    worker = popen(procs, store, "worker")
    wait_for(lambda: detail(store, task_id)["status"] == "waiting", what="the task to wait")
    assert term(worker) == 0
    r, took = timed(store, "show", task_id)
    assert r.returncode == 0 and took < PROMPT, (took, r.stderr)
    held = next(line for line in r.stdout.splitlines() if line.strip().startswith("held ="))
    assert "{:big [#<integer of 500,001 bits> 1/3]" in held, held
    assert len(held) < 200, held  # cut short, with its long string unprinted
    assert "big = #<integer of 500,001 bits>" in r.stdout


def test_a_huge_value_in_an_error_fails_the_task_promptly(tmp_path):
    store = tmp_path / "store"
    program(tmp_path, "throw.fm", "(throw [(bit-shift-left 1 524000) :oops])")
    task_id = start(store, "throw.fm")
    r, took = timed(store, "worker", "--until-idle")
    assert r.returncode == 0 and took < 15, (took, r.stderr)
    (row,) = json.loads(ok(fm(store, "tasks", "--json")))
    assert row["status"] == "failed"
    events = json.loads(ok(fm(store, "log", task_id, "--json")))
    assert events[-1]["kind"] == "failed"
    assert events[-1]["details"]["error"] == f"[{BIG_TEXT} :oops]"
    assert events[-1]["details"]["text"].startswith(f"[{BIG_TEXT} :oops]")


# -- 8. a writer stopped while it holds the write lock ------------------------------------

HOLDER = """
import os, signal, sys
from flowmetal.store import open_store
store = open_store(sys.argv[1])
with store.backend.write() as t:
    t.put_name("uncommitted", "0" * 64)
    print("holding", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_read_only_commands_answer_while_a_stopped_process_holds_the_write_lock(
        tmp_path, procs):
    store = tmp_path / "store"
    program(tmp_path, "done.fm", '(println "finished") [:done 42]')
    program(tmp_path, "wait.fm", "(receive :timeout 600)")
    ok(fm(store, "run", "done.fm"))
    waiting = start(store, "wait.fm")
    finished = json.loads(ok(fm(store, "tasks", "--json")))[0]["id"]

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store)], env=env(),
                              stdout=subprocess.PIPE, text=True)
    procs.append(holder)
    assert holder.stdout.readline() == "holding\n"
    wait_for(lambda: stopped(holder.pid), what="the holder to stop")
    # The lock is really held: a writer waits for it.
    with pytest.raises(subprocess.TimeoutExpired):
        fm(store, "send", waiting, ":x", timeout=1.5)

    for args, expect in [(["tasks"], "wait.fm"), (["tasks", "--json", "--all"], waiting),
                         (["show", finished], "[:done 42]"), (["show", waiting], "runnable"),
                         (["log", finished], "done"), (["log", waiting, "--json"], "created")]:
        r, took = timed(store, *args)
        assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
        assert took < PROMPT, (args, took)
        assert expect in r.stdout, (args, r.stdout)

    holder.kill()
    holder.wait(TIMEOUT)
    r, took = timed(store, "send", waiting, ":x")  # the dead writer's lock passes on
    assert r.returncode == 0 and took < PROMPT, (r.stderr, took)


# -- 9. a full disk -----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs, unmounted at the end whatever happened."""
    where = tmp_path / "disk"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small disk")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 16 MiB tmpfs (needs root): {proc.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)]).returncode != 0:
            subprocess.run(["umount", "-l", str(where)])


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    with open(path, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)


# Long lines: the store must grow its file within a few steps once the disk is full.
PAD = "x" * 1000


def test_a_full_disk_is_waited_out_and_fails_no_task(tmp_path, small_disk, procs):
    store = small_disk / "store"
    program(small_disk, "loud.fm", f"""
        (defn stop? [] (try (receive :timeout 0) true (catch :timeout e false)))
        (loop [i 0]
          (println "line" i "{PAD}")
          (sleep 0.005)
          (if (stop?) i (recur (inc i))))
        """)
    task_id = start(store, "loud.fm")
    errors = tmp_path / "worker.err"
    with open(errors, "w") as err:
        # Its output is read back with resume below; unread, a pipe would fill and stop it.
        worker = popen(procs, store, "worker", stderr=err, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: detail(store, task_id)["steps"] >= 20, what="20 steps")
        filler = small_disk / "filler"
        fill(filler)
        wait_for(lambda: "cannot commit" in errors.read_text(), 30, what="the worker to say so")
        time.sleep(0.5)
        assert worker.poll() is None, errors.read_text()
        during = detail(store, task_id)  # reading a store on a full disk works
        assert during["status"] in ("runnable", "waiting"), during
        filler.unlink()
        wait_for(lambda: "commits again" in errors.read_text(), what="commits again")
        ok(fm(store, "send", task_id, ":stop"))
        done = wait_for(lambda: (d := detail(store, task_id))["status"] == "done" and d,
                        what="the task to finish")
        assert worker.poll() is None
    finally:
        if worker.poll() is None:
            term(worker)
    assert worker.returncode == 0
    text = errors.read_text()
    assert "Traceback" not in text and "full" in text, text
    last = int(done["result"])
    assert last > 20
    # Its whole output, exactly once, in order.
    shown = ok(fm(store, "resume", task_id))
    assert shown == "".join(f"line {i} {PAD}\n" for i in range(last + 1))
    kinds = [e["kind"] for e in json.loads(ok(fm(store, "log", task_id, "--json")))]
    assert "failed" not in kinds and kinds[-1] == "done"


# -- 10. undecodable records --------------------------------------------------------------


def test_undecodable_records_fail_their_tasks_alone(tmp_path, procs):
    store = tmp_path / "store"
    program(tmp_path, "good.fm", '(println "good" (first *command-line-args*)) :good')
    program(tmp_path, "answer.fm", "(receive :timeout 600)")
    answered = start(store, "answer.fm")
    worker = popen(procs, store, "worker")
    wait_for(lambda: detail(store, answered)["status"] == "waiting", what="the wait")
    assert term(worker) == 0
    ok(fm(store, "send", answered, "[:a message]"))  # answered, not yet seen by the task
    goods = [ok(fm(store, "start", "good.fm", str(i))).strip() for i in range(2)]
    garbage, short = (start(store, "good.fm") for _ in range(2))

    s = open_store(str(store))
    rec = s.get(answered)
    assert rec.answer is not None and rec.status == "runnable"
    rec.answer.value = b"\xff\x00 not a value"
    with s.backend.write() as t:
        t.put_task(answered, rec.to_bytes(), columns(rec))
        t.put_task(garbage, b"garbage", columns(s.get(garbage)))
        fields = cbor2.loads(s.get(short).to_bytes())
        t.put_task(short, cbor2.dumps(fields[:4]), columns(s.get(short)))  # fields missing

    r = fm(store, "tasks", "--all", "--json")
    listed = {row["id"] for row in json.loads(ok(r))}
    assert listed == {answered, *goods}
    assert "2 task records could not be read" in r.stderr, r.stderr
    r = fm(store, "tasks", "--all")
    assert "2 task records could not be read" in r.stderr and goods[0] in r.stdout
    for bad in (garbage, short):
        r = fm(store, "show", bad)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert r.stderr.startswith(f"flowmetal: task {bad}: unreadable task record"), r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""

    r = fm(store, "worker", "--until-idle")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    for good in goods:
        assert detail(store, good)["result"] == ":good"
    failed = detail(store, answered)
    assert failed["status"] == "failed"
    assert ":corrupt-state" in failed["error"] and "answer cannot be read" in failed["error"]
    for bad in (garbage, short):
        d = detail(store, bad)
        assert d["status"] == "failed", d
        assert ":corrupt-state" in d["error"] and "unreadable task record" in d["error"], d
    r = fm(store, "tasks", "--all", "--json")
    assert len(json.loads(ok(r))) == 5 and r.stderr == ""


# -- 11. leases of killed and stopped workers ---------------------------------------------

SPIN = "(loop [i 0] (if (< i 12000000) (recur (inc i)) i))"


def leased_by(store: Path, task_id: str) -> str | None:
    d = detail(store, task_id)
    return d["lease"]["worker"] if d["lease"] and d["running"] else None


def test_a_killed_workers_leases_are_cleared_at_once(tmp_path, procs):
    store = tmp_path / "store"
    program(tmp_path, "spin.fm", SPIN)
    task_id = start(store, "spin.fm")
    first = popen(procs, store, "worker")
    holder = wait_for(lambda: leased_by(store, task_id), what="a lease")
    first.kill()
    first.wait(TIMEOUT)
    # Its lease still stands (30 s) but its liveness lock is gone: a new worker takes the
    # task at once.
    assert detail(store, task_id)["lease"]["worker"] == holder
    second = popen(procs, store, "worker")
    started = time.monotonic()
    taker = wait_for(lambda: (w := leased_by(store, task_id)) != holder and w,
                     what="the second worker to take the task")
    assert time.monotonic() - started < 10
    assert detail(store, task_id)["status"] == "runnable"
    second.kill()
    second.wait(TIMEOUT)
    assert detail(store, task_id)["lease"]["worker"] == taker
    # resume does the same.
    r, took = timed(store, "resume", task_id)
    assert r.returncode == 0, r.stderr
    assert took < 20
    assert detail(store, task_id)["result"] == "12000000"


def test_a_stopped_worker_is_alive_and_keeps_its_leases(tmp_path, procs):
    store = tmp_path / "store"
    program(tmp_path, "spin.fm", SPIN)
    program(tmp_path, "probe.fm", ":probed")
    task_id = start(store, "spin.fm")
    first = popen(procs, store, "worker")
    holder = wait_for(lambda: leased_by(store, task_id), what="a lease")
    for _ in range(5):
        first.send_signal(signal.SIGSTOP)
        wait_for(lambda: stopped(first.pid), what="the worker to stop")
        try:  # a write: the worker did not stop inside a transaction
            probe = fm(store, "start", "probe.fm", timeout=5).stdout.strip()
            break
        except subprocess.TimeoutExpired:
            first.send_signal(signal.SIGCONT)
            time.sleep(0.05)
    else:
        pytest.fail("the worker stopped inside a write transaction five times")
    before = detail(store, task_id)
    second = popen(procs, store, "worker")
    # The second worker runs (it finishes the probe) but leaves the stopped one's task.
    wait_for(lambda: detail(store, probe)["status"] == "done", what="the probe to run")
    time.sleep(0.5)
    after = detail(store, task_id)
    assert after["lease"]["worker"] == holder and after["steps"] == before["steps"]
    assert after["running"]
    assert term(second) == 0
    # Once the stopped worker is gone for good, a new worker takes its task at once.
    first.kill()
    first.wait(TIMEOUT)
    third = popen(procs, store, "worker")
    wait_for(lambda: leased_by(store, task_id) not in (None, holder), what="a takeover")
    assert term(third) == 0


# -- 12. a truncated data file ------------------------------------------------------------


def test_a_truncated_data_file_is_a_clear_error(tmp_path):
    origin = tmp_path / "origin"
    program(tmp_path, "some.fm", '(println "x") (sleep 0.01) [1 2 3]')
    for _ in range(3):
        ok(fm(origin, "run", "some.fm"))
    data = origin / "data.mdb"
    size = data.stat().st_size
    assert size >= 8 * 4096
    for n, cut in enumerate([0, 100, 4096, 2 * 4096, 5 * 4096, size // 2]):
        where = tmp_path / f"cut{n}"
        where.mkdir()
        with open(data, "rb") as f:
            (where / "data.mdb").write_bytes(f.read(cut))
        if n % 2:
            shutil.copy(origin / "lock.mdb", where / "lock.mdb")
        forms = [["tasks", "--store", str(where)], ["--store", str(where), "tasks"],
                 ["--store", str(where), "show", "x"]]
        for args in forms if n == 0 else forms[:1]:
            r = subprocess.run([sys.executable, "-m", "flowmetal", *args], env=env(),
                               cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
            assert r.returncode == 2, (cut, args, r.returncode, r.stderr)
            assert r.stderr.startswith("flowmetal: the store's data file "), r.stderr
            assert str(where / "data.mdb") in r.stderr and "truncated" in r.stderr
            assert "Traceback" not in r.stderr and r.stdout == ""
        assert (where / "data.mdb").stat().st_size == cut  # left as it was
