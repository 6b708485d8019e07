"""Helpers for the durable-task tests: programs, running workers (in this process, as a
script, or forked from a server that has Flowmetal loaded already, so a test can start
and SIGKILL hundreds of workers quickly), and reading back what a task tree did in a
form that does not depend on task ids or clocks.

Run as a script: ``durable_helpers.py worker JSON`` runs one worker; ``durable_helpers.py
forkserver [FILE.fm ...]`` serves fork requests read on stdin, one JSON command a line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager

HERE = os.path.abspath(__file__)

# ---------------------------------------------------------------------------------------
# Programs: each is deterministic per task whatever the scheduling (every inbox has one
# sender, joins go in a fixed order), so any two runs must agree.

CHILD = """
(println "child" *command-line-args*)
(sleep 0.01)
(str "child-" (first *command-line-args*))
"""

PROGRAMS = {
    "countdown": """
(defn countdown [n]
  (loop [i n]
    (when (> i 0)
      (println "tick" i)
      (sleep 0.01)
      (recur (dec i))))
  (println "liftoff")
  :liftoff)
(countdown 8)
""",
    "pingpong": """
(defn ponger []
  (loop [n 0]
    (let [[from x] (receive)]
      (if (= x :stop)
        n
        (do (send from [:pong x]) (recur (inc n)))))))
(def p (spawn ponger))
(def got
  (loop [i 0 acc []]
    (if (< i 6)
      (do (send p [(self) i])
          (let [[_ x] (receive (fn [m] (= (first m) :pong)))]
            (println "ping" i "pong" x)
            (recur (inc i) (conj acc x))))
      acc)))
(send p [(self) :stop])
[got (join p)]
""",
    "fanout": """
(defn work [k]
  (let [s (reduce + (map (fn [x] (* x x k)) (range 150)))]
    (println "worker" k "sum" s)
    (sleep 0.005)
    s))
(def kids (map (fn [k] (spawn work k)) (range 3)))
(def file-kid (spawn "child.fm" "fan"))
(def results (map join kids))
(println "results" results)
[results (join file-kid)]
""",
    "callcc_wind": """
(def trace [])
(defn note [x] (set! trace (conj trace x)) (println "note" x))
(defn make-gen [items]
  (let [return nil resume nil]
    (fn []
      (call/cc
        (fn [r]
          (set! return r)
          (if resume
            (resume nil)
            (do (doseq [x items]
                  (sleep 0.002)
                  (call/cc (fn [k] (set! resume k) (return x))))
                (return :done))))))))
(def g (make-gen [1 2 3]))
(def pulled [(g) (g) (g) (g)])
(note pulled)
(dynamic-wind
  (fn [] (note :in))
  (fn [] (dotimes [i 3] (sleep 0.002) (note i)))
  (fn [] (note :out)))
(def escaped
  (call/cc (fn [k] (dynamic-wind (fn [] (note :in2))
                                 (fn [] (sleep 0.001) (k :escaped) (note :never))
                                 (fn [] (note :out2))))))
(def k-saved nil)
(def count 0)
(def r (+ 100 (call/cc (fn [k] (set! k-saved k) 0))))
(set! count (inc count))
(sleep 0.001)
(when (< count 3) (k-saved count))
(def caught
  (try (dynamic-wind (fn [] (note :in3)) (fn [] (sleep 0.001) (error "boom"))
                     (fn [] (note :out3)))
       (catch e (:message e))))
[trace escaped r count caught (reduce + (range 300))]
""",
    "random_now": """
(def r (random 1000000000))
(println "r" r)
(sleep 0.01)
(println "r again" r)
(def t (now))
(def f (random))
(sleep 0.005)
(println "t" t "f" f)
[r t f]
""",
    "selective": """
(def me (self))
(doseq [m [[:b 1] [:a 1] [:b 2] [:a 2]]] (send me m))
(def as [(receive (fn [m] (= (first m) :a))) (receive (fn [m] (= (first m) :a)))])
(def fallback (try (receive (fn [m] (= (first m) :c)) :timeout 0.02)
                   (catch :timeout e [:default (:type e)])))
(def bs [(receive) (receive)])
(println as fallback bs)
[as fallback bs]
""",
}


def write_programs(directory: str, names=None) -> dict[str, str]:
    """Write the programs (and child.fm, which fanout spawns) into ``directory``;
    {name: path}."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "child.fm"), "w") as f:
        f.write(CHILD)
    paths = {}
    for name in names or PROGRAMS:
        paths[name] = os.path.join(directory, f"{name}.fm")
        with open(paths[name], "w") as f:
            f.write(PROGRAMS[name])
    return paths


def start_programs(store, paths: dict[str, str], **options) -> dict[str, str]:
    """Start each program as a task; {name: task id}."""
    from flowmetal.runtime import api

    out = {}
    for name, path in paths.items():
        with open(path) as f:
            out[name] = api.start(store, f.read(), path, **options)
    return out


# ---------------------------------------------------------------------------------------
# Reading tasks back


def status(store, task_id: str) -> str:
    return str(store.get(task_id).status)


def unfinished(store) -> list[str]:
    """Ids of the store's tasks that are not finished."""
    with store.view() as view:
        return [rec.id for rec in view.tasks(limit=1 << 62) if not rec.finished]


def log_entries(store, task_id: str) -> list[dict]:
    """The task's events as dicts: kind, at, and the details, encoded values printed
    in full (``value``, ``error``)."""
    from flowmetal.printer import to_string
    from flowmetal.runtime.records import decode_data

    out = []
    with store.view() as view:
        for _, e in view.log(task_id):
            entry = {"kind": e.kind, "at": e.at, **e.details}
            for key in ("value", "error"):
                if isinstance(entry.get(key), bytes):
                    entry[key] = to_string(decode_data(entry[key]))
            out.append(entry)
    return out


def output_chunks(store, task_id: str) -> list[str]:
    with store.view() as view:
        return [text for _, text in view.output(task_id)]


def requests_and_answers(entries: list[dict], complete: bool = True) -> list[tuple[str, dict]]:
    """The answers of a task's log in request order, as (op, answer entry), checking that
    requests are numbered 1, 2, .. and each has exactly one answer, after its "request"
    entry if it has one (a request answered in its own commit has none).  Unless
    ``complete``, the last request may be unanswered (a task failed while it waited)."""
    requests: dict[int, dict] = {}
    answers: dict[int, dict] = {}
    for e in entries:
        if e["kind"] == "request":
            r = e["request"]
            assert r not in requests, f"request {r} logged twice"
            assert r not in answers, f"request {r} logged after its answer"
            requests[r] = e
        elif e["kind"] == "answer":
            r = e["request"]
            assert r not in answers, f"request {r} ({e.get('op')}) answered twice"
            if r in requests:
                assert requests[r]["op"] == e["op"], (requests[r], e)
            answers[r] = e
    numbers = sorted(set(requests) | set(answers))
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    unanswered = [r for r in numbers if r not in answers]
    if complete or unanswered != numbers[-1:]:
        assert not unanswered, f"requests {unanswered} have no answer"
    return [(answers[r]["op"], answers[r]) for r in numbers if r in answers]


_TIMEOUT_SECONDS = re.compile(r"timed out after [0-9.e+-]+ s")
_DEADLINE = re.compile(r":deadline [0-9.e+-]+")


def snapshot(store, root: str) -> dict[str, dict]:
    """What a task tree did, by each task's place in the tree ("T", "T.0", ..): status,
    result, output (whole text and chunks), and the answers to its requests; task ids,
    deadlines, and the values of ``now`` and ``random`` (which differ between runs) are
    replaced by names, after checking each request got exactly one answer."""
    from flowmetal.printer import to_string
    from flowmetal.runtime.records import result_value

    names: dict[str, str] = {}
    queue = [(root, "T")]
    with store.view() as view:
        while queue:
            tid, name = queue.pop(0)
            names[tid] = name
            rec = view.task(tid)
            queue.extend((c, f"{name}.{i}") for i, c in enumerate(rec.children))
    ids = re.compile("|".join(re.escape(t) for t in sorted(names, key=len, reverse=True)))
    out = {}
    for tid, name in names.items():
        rec = store.get(tid)
        entries = log_entries(store, tid)
        pairs = requests_and_answers(entries)
        recorded = []
        answers = []
        for op, ans in pairs:
            value = ans["value"]
            if op in ("now", "random") and ans["ok"]:
                recorded.append(value)
                value = f"<{op}>"
            answers.append((op, ans["ok"], value))

        def norm(text: str, recorded=recorded) -> str:
            for i, v in enumerate(recorded):
                text = re.sub(r"(?<![\w.])" + re.escape(v) + r"(?![\w.])", f"<r{i}>", text)
            text = _TIMEOUT_SECONDS.sub("timed out after <s> s", text)
            text = _DEADLINE.sub(":deadline <t>", text)
            return ids.sub(lambda m: names[m.group(0)], text)

        chunks = output_chunks(store, tid)
        value = result_value(rec) if rec.status in ("done", "failed") else None
        out[name] = {
            "status": str(rec.status),
            "result": norm(to_string(value)),
            "output": norm("".join(chunks)),
            "chunks": [norm(c) for c in chunks],
            "answers": [(op, ok, norm(v)) for op, ok, v in answers],
            "recorded": recorded,
        }
    return out


def without_chunks(snap: dict[str, dict]) -> dict[str, dict]:
    """The snapshot without how its output was cut into steps."""
    return {name: {k: v for k, v in task.items() if k not in ("chunks", "recorded")}
            for name, task in snap.items()}


# ---------------------------------------------------------------------------------------
# Stores and workers in this process


def count_writes(store):
    """``store``, counting its write transactions in ``store.writes``."""
    backend = store.backend
    write = backend.write
    store.writes = 0

    @contextmanager
    def counted():
        store.writes += 1
        with write() as t:
            yield t

    backend.write = counted
    return store


def run_until_finished(store, task_ids, timeout: float = 30.0, **worker_options):
    """Run a worker in this process until the given tasks are finished (at most
    ``timeout`` seconds: TimeoutError); the worker."""
    from flowmetal.runtime.worker import Worker

    end = time.monotonic() + timeout
    worker = Worker(store, **worker_options)

    def until() -> bool:
        with store.view() as view:
            if all(view.task(t).finished for t in task_ids):
                return True
        if time.monotonic() > end:
            raise TimeoutError(f"tasks not finished after {timeout} s")
        return False

    worker.run(until=until)
    return worker


def expire_leases(store) -> None:
    """Let every lease lapse now, as time passing after its worker died would."""
    from flowmetal.store.engine import Unit

    with store.backend.write() as t:
        unit = Unit(t)
        for task_id in t.leased():
            rec = unit.get(task_id)
            if rec is not None and rec.lease is not None:
                rec.lease.until = 0.0
                unit.put(rec)
        unit.flush()


# ---------------------------------------------------------------------------------------
# Worker processes


def _record_steps(path: str) -> None:
    """Make this process's workers append a line to ``path`` for every step they commit:
    task, epoch, worker, reductions before and after, when the slice started and when it
    was committed."""
    import flowmetal.runtime.worker as wm
    import flowmetal.store.drafts as drafts
    import flowmetal.store.engine as engine

    sink = open(path, "a", buffering=1)
    commit_step, apply, run = engine.commit_step, drafts.apply, wm.Worker._run
    ran: dict = {}  # id(step) -> (reductions before, when its slice started)

    def record(step, worker, now):
        before, started = ran.pop(id(step), (None, None))
        if before is not None:
            sink.write(json.dumps({"task": step.task_id, "epoch": step.epoch,
                                   "worker": worker, "before": before,
                                   "after": step.reductions,
                                   "started": started, "at": now}) + "\n")

    def recording_commit(unit, step, worker, lease_for):
        ok = commit_step(unit, step, worker, lease_for)
        if ok and step.blocked is None:
            record(step, worker, unit.now)
        return ok

    def recording_apply(unit, draft, step):
        ok = apply(unit, draft, step)
        if ok:
            record(step, draft.record.lease.worker, draft.record.updated)
        return ok

    def recording_run(self, rec, cont):
        started = time.time()
        step = run(self, rec, cont)
        ran[id(step)] = (rec.reductions, started)
        return step

    engine.commit_step = recording_commit
    drafts.apply = recording_apply
    wm.Worker._run = recording_run


def run_worker(cmd: dict) -> int:
    """Run a worker as ``cmd`` says: store, slice, lease, batch, poll, draft, id, record,
    seconds, ready (a file created once the worker is about to start).  Exits when idle
    (status 0), or with status 3 when ``seconds`` passed first."""
    from flowmetal.runtime.worker import Worker
    from flowmetal.store import open_store

    if cmd.get("record"):
        _record_steps(cmd["record"])
    store = open_store(cmd["store"])
    worker = Worker(store, worker_id=cmd.get("id"), slice_size=cmd.get("slice", 50),
                    lease_seconds=cmd.get("lease", 30.0), batch=cmd.get("batch", 64),
                    poll=cmd.get("poll", 0.01), draft=cmd.get("draft", "auto"))
    end = time.monotonic() + cmd.get("seconds", 60.0)
    late = []
    if cmd.get("ready"):
        open(cmd["ready"], "w").close()

    def until() -> bool:
        if time.monotonic() > end:
            late.append(True)
            return True
        return False

    worker.run(until=until, idle_exit=True)
    return 3 if late else 0


def worker_process(cmd: dict, stderr) -> subprocess.Popen:
    """A worker in a new Python process."""
    return subprocess.Popen([sys.executable, HERE, "worker", json.dumps(cmd)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)


class ForkServer:
    """A process with Flowmetal loaded that forks a worker process per request, so a
    worker starts in milliseconds.  Its workers are real processes: ``kill`` SIGKILLs.
    ``preload`` names program files analyzed once in the server, so its workers find them
    analyzed (else each worker analyzes the stored source of the programs it resumes)."""

    def __init__(self, preload: list[str] = ()):
        self.proc = subprocess.Popen([sys.executable, HERE, "forkserver", *preload],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buffer = b""
        self.exits: dict[int, int] = {}
        self.pending: list[dict] = []
        self.ready = self._next(lambda m: "ready" in m, 60.0)

    def _read(self, timeout: float) -> None:
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # (not select: descriptors past FD_SETSIZE)
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0.0, timeout) * 1000):
            return
        data = os.read(fd, 65536)
        if not data:
            raise RuntimeError("the fork server died")
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            msg = json.loads(line)
            if "exit" in msg:
                self.exits[msg["exit"]] = msg["code"]
            else:
                self.pending.append(msg)

    def _next(self, pred, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while True:
            for msg in self.pending:
                if pred(msg):
                    self.pending.remove(msg)
                    return msg
            if time.monotonic() > end:
                raise TimeoutError("no answer from the fork server")
            self._read(end - time.monotonic())

    def start(self, cmd: dict) -> int:
        """Fork a worker running ``cmd`` (see ``run_worker``); its pid."""
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        return self._next(lambda m: "pid" in m, 30.0)["pid"]

    def wait(self, pid: int, timeout: float) -> int | None:
        """The worker's exit status once it exits within ``timeout`` seconds, else None
        (-9 means SIGKILLed)."""
        end = time.monotonic() + timeout
        while pid not in self.exits:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._read(left)
        return self.exits[pid]

    def kill(self, pid: int) -> int:
        """SIGKILL the worker unless it has exited; its exit status."""
        self._read(0)
        if pid not in self.exits:
            # It may exit and be reaped by the fork server just now: then its exit
            # message is on its way.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        code = self.wait(pid, 30.0)
        if code is None:
            raise TimeoutError(f"worker {pid} did not die")
        return code

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()


def _fork_worker(cmd: dict) -> None:
    code = 1
    try:
        os.setpgid(0, 0)
        err = os.open(cmd["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(err, 2)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = run_worker(cmd)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def forkserver_main(preload: list[str]) -> None:
    import flowmetal.runtime.worker  # noqa: F401
    import flowmetal.store  # noqa: F401
    from flowmetal.interpreter import Session, base
    from flowmetal.program import register

    base()
    for path in preload:
        with open(path) as f:
            program = register(Session().load(f.read(), path))
        Session().machine(program).run(10_000)  # compiles the program's fast paths

    def send(msg: dict) -> None:
        os.write(1, (json.dumps(msg) + "\n").encode())

    send({"ready": os.getpid()})
    buffer = b""
    children: set[int] = set()
    open_ = True
    while open_ or children:
        ready, _, _ = select.select([0] if open_ else [], [], [], 0.002)
        if ready:
            data = os.read(0, 65536)
            if not data:
                open_ = False
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                pid = os.fork()
                if pid == 0:
                    _fork_worker(json.loads(line))
                children.add(pid)
                send({"pid": pid})
        while children:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            if open_:
                send({"exit": pid, "code": os.waitstatus_to_exitcode(wait_status)})


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        sys.exit(run_worker(json.loads(sys.argv[2])))
    elif sys.argv[1] == "forkserver":
        forkserver_main(sys.argv[2:])
