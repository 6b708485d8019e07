"""Workers: lease runnable tasks, run their steps, commit the steps of many tasks at once.

One round of a worker is one write transaction that commits the steps run in the
previous round, fires the timers that are due and leases the next batch of runnable
tasks; then, outside any transaction, it runs one slice of each leased task.  So the
steps of many tasks share one commit (group commit) while each step stays atomic.

A lease names the worker, an epoch and an expiry.  A worker that dies stops renewing
its leases; when they expire another worker takes the tasks and resumes each from its
last committed step.  A step is committed only if its lease (same worker, same epoch)
still stands, so no task ever runs twice at once.
"""

from __future__ import annotations

import gc
import os
import socket
import time
from collections.abc import Callable

from ..codec import CodecError, Image, decode_machine
from ..interpreter import base
from ..machine import Machine
from ..store.base import StoreError
from ..values import Map, kw
from . import drafts
from .records import FINISHED, TaskError, decode_data, load_program
from .steps import Step, Tasks, commit_step, fail, fire_timers, task_error

K_TYPE = kw("type")
MIN_FRAME_BYTES = 4  # a frame's record: its kind, owner, next and env
# A task seen leased by another worker is passed over, unread, for this long (at most
# until its lease ends), so that workers sharing a store do not keep reading each
# other's records; a lease given up early is noticed within this time.
RECHECK_ELSEWHERE = 1.0
# Drafts (drafts.py) shorten a worker's write transactions at the cost of some work of
# its own: worth it only while other processes wait for the store's write lock.  With
# "auto", a worker drafts for DRAFT_FOR seconds after it waited CONTENDED seconds or more
# for the lock itself (so some other process held it); "always" and "never" say it all.
DRAFT_MODES = ("auto", "always", "never")
CONTENDED = 0.000_5
DRAFT_FOR = 2.0


def tune_gc() -> None:
    """Tune Python's cycle collector for a process whose main work is running tasks.

    A step makes many short-lived containers and few cycles, so collecting the youngest
    generation every 700 allocations (Python's default) spends ~6% of a busy worker's
    time finding next to nothing; every 50,000 costs a few MB and frees the same cycles.
    What exists already (the standard library, the modules) lives as long as the
    process: it is moved out of the collector's sight.
    """
    gc.set_threshold(50_000, 20, 20)
    gc.freeze()


def count_frames(k: object, limit: int) -> int:
    """Frames in a continuation, counting at most ``limit + 1``."""
    n = 0
    while k is not None and n <= limit:
        n += 1
        k = k[1]
    return n


class Worker:
    """Runs the tasks of a store; ``round()`` does one round, ``run()`` loops."""

    def __init__(self, store, worker_id: str | None = None, slice_size: int = 10_000,
                 batch: int = 64, lease_seconds: float = 30.0, poll: float = 0.05,
                 draft: str = "auto"):
        if draft not in DRAFT_MODES:
            raise ValueError(f"draft must be one of {', '.join(DRAFT_MODES)}")
        self.store = store
        self.draft = draft  # see DRAFT_MODES
        self.drafting_until = 0.0
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.slice_size = slice_size
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.poll = poll
        self.pending: list[Step] = []
        self.machines: dict[str, tuple[int, Machine]] = {}
        self.records: dict[str, tuple[bytes, dict]] = {}  # Tasks.known, for leased tasks
        self.answers: dict[str, tuple[int, object]] = {}  # Tasks.answers of the last round
        # Tasks another worker holds: when to read their records again.
        self.elsewhere: dict[str, float] = {}
        self.cursor = ""
        self.on_commit: Callable[[Tasks], None] | None = None

    # -- one round ------------------------------------------------------------------

    def round(self, stopping: bool = False) -> int:
        """Commit the last round's steps, fire timers, lease and run tasks.

        Returns how many steps were run (0 means there was nothing to do).
        """
        now = time.time()
        leased: list[tuple[dict, bytes | None]] = []
        steps = self.pending
        try:
            self._commit_round(now, stopping, leased)
        except BaseException as exc:
            # The round's transaction is lost: forget the machines that ran its steps, so
            # their tasks resume from their committed state, and the records it changed.
            self.machines.clear()
            self.records.clear()
            self.answers = {}
            self.pending = []
            if not isinstance(exc, Exception) or isinstance(exc, StoreError):
                raise
            # A step the runtime cannot commit must fail its task, not every worker:
            # commit the steps one by one and fail the one that breaks.
            self._commit_singly(steps, now)
            return 0
        self.pending = [self._run(rec, cont) for rec, cont in leased]
        if self.draft == "always" or \
                (self.draft == "auto" and time.monotonic() < self.drafting_until):
            now = time.time()  # drafted together, after the slices: faster than interleaved
            for step in self.pending:
                step.draft = drafts.prepare(step, self.records.get(step.task_id), self.id,
                                            now, self.lease_seconds)
        return len(self.pending)

    def _commit_singly(self, steps: list[Step], now: float) -> None:
        for step in steps:
            try:
                with self.store.write() as txn:
                    tasks = Tasks(txn)
                    commit_step(tasks, step, self.id, now, self.lease_seconds)
                    tasks.flush()
            except StoreError:
                raise
            except Exception as exc:
                with self.store.write() as txn:
                    tasks = Tasks(txn)
                    rec = tasks.get(step.task_id)
                    if rec is not None and rec["status"] not in FINISHED:
                        fail(tasks, rec, "internal-error",
                             f"the step of task {step.task_id} could not be committed: "
                             f"{type(exc).__name__}: {exc}", now)
                        tasks.flush()

    def _commit_round(self, now: float, stopping: bool, leased: list) -> None:
        asked = time.monotonic()
        with self.store.write() as txn:
            began = time.monotonic()
            if began - asked > CONTENDED:
                self.drafting_until = began + DRAFT_FOR
            tasks = Tasks(txn, self.records)
            for step in self.pending:
                if stopping:
                    step.keep_lease, step.draft = False, None
                if step.draft is not None and drafts.apply(tasks, step.draft):
                    continue
                if not commit_step(tasks, step, self.id, now, self.lease_seconds):
                    self.machines.pop(step.task_id, None)
            self.pending = []
            fire_timers(tasks, now)
            if not stopping:
                leased.extend(self._lease(tasks, now))
            if self.on_commit is not None:
                self.on_commit(tasks)
            tasks.flush()
        self.answers = tasks.answers

    def _lease(self, tasks: Tasks, now: float) -> list[tuple[dict, bytes | None]]:
        txn = tasks.txn
        candidates = txn.runnable(self.batch * 4, after=self.cursor)
        if len(candidates) < self.batch * 4 and self.cursor:
            candidates += txn.runnable(self.batch * 4 - len(candidates))
        out: list[tuple[dict, bytes | None]] = []
        seen = set()
        elsewhere = self.elsewhere
        if len(elsewhere) > 8 * self.batch:
            elsewhere = self.elsewhere = {t: u for t, u in elsewhere.items() if u > now}
        for task_id in candidates:
            if len(out) >= self.batch:
                break
            if task_id in seen or elsewhere.get(task_id, 0.0) > now:
                continue
            seen.add(task_id)
            rec = tasks.get(task_id)
            if rec is None or rec["status"] != "runnable":
                txn.runnable_remove(task_id)
                continue
            lease = rec.get("lease")
            if lease and lease["until"] > now and lease["worker"] != self.id:
                elsewhere[task_id] = min(lease["until"], now + RECHECK_ELSEWHERE)
                continue
            if not (lease and lease["worker"] == self.id and lease["until"] > now):
                rec["epoch"] = rec.get("epoch", 0) + 1
                rec["lease"] = {"worker": self.id, "epoch": rec["epoch"],
                                "until": now + self.lease_seconds}
                tasks.put(rec)
            cached = self.machines.get(task_id)
            if cached is not None and cached[0] == rec["lease"]["epoch"]:
                out.append((rec, None))
            else:
                self.machines.pop(task_id, None)
                out.append((rec, txn.get_cont(task_id)))
            self.cursor = task_id
        leased = {rec["id"] for rec, _ in out}
        for task_id in [t for t in self.machines if t not in leased]:
            del self.machines[task_id]
            # Passed over in this round (more tasks are runnable than the batch holds):
            # give up its lease, so that another worker may run it meanwhile.
            rec = tasks.get(task_id)
            lease = rec.get("lease") if rec is not None else None
            if lease is not None and lease["worker"] == self.id:
                rec["lease"] = None
                tasks.put(rec)
        for task_id in [t for t in self.records if t not in leased]:
            del self.records[task_id]
        return out

    # -- running a slice ------------------------------------------------------------

    def _machine(self, rec: dict, cont: bytes | None) -> Machine:
        if cont is None:
            return self.machines.pop(rec["id"])[1]
        with self.store.read() as txn:
            for digest in rec.get("programs") or [rec["program"]]:
                load_program(txn, digest)
        return decode_machine(cont, base().globals)

    def _run(self, rec: dict, cont: bytes | None) -> Step:
        epoch = rec["lease"]["epoch"]
        try:
            m = self._machine(rec, cont)
        except (CodecError, TaskError) as exc:
            return self._failed(rec, epoch, "corrupt-state",
                                f"task {rec['id']} cannot be resumed: {exc}")
        except Exception as exc:  # a continuation record that is not even CBOR
            return self._failed(rec, epoch, "corrupt-state",
                                f"task {rec['id']} cannot be resumed: {type(exc).__name__}")
        step = Step(rec["id"], epoch, m)
        m.task_id = rec["id"]
        answer = rec.get("answer")
        if m.status == "waiting" and answer is not None:
            given = self.answers.get(rec["id"])
            if given is not None and given[0] == answer["request"]:
                value = given[1]
            else:
                value = decode_data(answer["value"])
            if answer["ok"]:
                m.answer(value)
            else:
                m.answer_error(value)
            step.took_answer = True
        if rec.get("cancel") and not rec.get("cancel_delivered") and m.status != "done":
            cancel = task_error("cancelled", f"task {rec['id']} was cancelled")
            if m.status == "waiting":
                m.answer_error(cancel)
            elif m.status == "running":
                m.interrupt(cancel)
            step.cancel_delivered = True
        if m.status == "running":
            self._slice(rec, m, step)
        return self._settle(rec, m, step)

    def _slice(self, rec: dict, m: Machine, step: Step) -> None:
        fuel = self.slice_size
        if not rec.get("trace"):
            # Committing a step costs in proportion to the state's size: let a big state
            # run longer between commits, so that cost stays a bounded share of the work.
            fuel = max(fuel, rec.get("state_bytes", 0) // 4)
        limit = rec["limits"].get("fuel")
        if limit is not None:
            fuel = max(0, min(fuel, limit - m.reductions))
        m.output = []
        m.write = m.output.append
        m.consumed = []
        if fuel:
            m.run(fuel)
        step.output = "".join(m.output)
        step.consumed = list(m.consumed)

    def _settle(self, rec: dict, m: Machine, step: Step) -> Step:
        limits = rec["limits"]
        if m.status == "running" and limits.get("fuel") is not None and \
                m.reductions >= limits["fuel"]:
            return self._limit(rec, step, "fuel", f"fuel of {limits['fuel']} reductions "
                                                  "used up")
        if m.status in ("running", "waiting"):
            image = getattr(m, "image", None)
            if image is None:
                image = m.image = Image(base().globals)
            step.state = image.encode(m, step.programs)
            # Every frame takes at least MIN_FRAME_BYTES of the encoded state, so only a
            # state that big can be too deep; only then are the frames counted.
            if len(step.state) > limits["depth"] * MIN_FRAME_BYTES and \
                    count_frames(m.k, limits["depth"]) > limits["depth"]:
                return self._limit(rec, step, "depth", f"continuation deeper than "
                                                       f"{limits['depth']} frames")
            if len(step.state) > limits["state"]:
                # Perhaps only unreachable records: encode afresh before judging.
                image.reset()
                step.state = image.encode(m, step.programs)
            if len(step.state) > limits["state"]:
                return self._limit(rec, step, "state", f"state of {len(step.state)} bytes "
                                                       f"exceeds {limits['state']}")
        if m.status == "running":
            step.status = "runnable"
            self.machines[rec["id"]] = (step.epoch, m)
        elif m.status == "waiting":
            step.status = "waiting"
            step.request = m.request
            # Kept for the next round, in case the answer is immediate (now, send...).
            self.machines[rec["id"]] = (step.epoch, m)
        elif m.status == "done":
            step.status, step.value = "done", m.val
        else:
            error = m.error
            cancelled = type(error) is Map and error.get(K_TYPE) == kw("cancelled")
            step.status = "cancelled" if cancelled and rec.get("cancel") else "failed"
            step.error = error
        if step.status not in ("runnable", "waiting"):
            self.machines.pop(rec["id"], None)
        return step

    def _limit(self, rec: dict, step: Step, limit: str, message: str) -> Step:
        self.machines.pop(rec["id"], None)
        step.state = None
        step.status = "failed"
        step.error = task_error("limit-error", message, Map({kw("limit"): kw(limit)}))
        return step

    def _failed(self, rec: dict, epoch: int, kind: str, message: str) -> Step:
        step = Step(rec["id"], epoch, Machine({}))
        step.status = "failed"
        step.error = task_error(kind, message)
        return step

    # -- loops ----------------------------------------------------------------------

    def run(self, until: Callable[[], bool] | None = None, idle_exit: bool = False) -> None:
        """Work until ``until()`` is true (or, with ``idle_exit``, nothing is left to do
        now or later); leases are released on the way out."""
        try:
            while until is None or not until():
                if self.round() == 0:
                    if idle_exit and not self._anything_left():
                        break
                    self.idle()
        finally:
            self.round(stopping=True)

    def _anything_left(self) -> bool:
        with self.store.read() as txn:
            return bool(txn.runnable(1)) or txn.next_timer() is not None

    def idle(self) -> None:
        """Wait a little for work: until the next timer, at most ``poll`` seconds."""
        with self.store.read() as txn:
            due = txn.next_timer()
        delay = self.poll if due is None else min(self.poll, max(0.0, due - time.time()))
        if delay > 0:
            time.sleep(delay)

