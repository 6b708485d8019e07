"""Workers: lease runnable tasks, run their steps, commit the steps of many tasks at once.

One round of a worker is one store transaction (``Store.round``) that commits the steps
run in the previous round, fires the timers that are due and leases the next batch of
runnable tasks; then, outside any transaction, it runs one slice of each leased task and
turns what the slice did into a ``StepCommit``: its state, output and request, every
value already encoded.  So the steps of many tasks share one commit (group commit) while
each step stays atomic.  Where the store sends a commit and then awaits it (PostgreSQL),
the claimed tasks run while the commit is on its way: a slice needs only the task's
record and answer, both known before the commit comes back (``_RunAhead``).

A lease names the worker, an epoch and an expiry by the store's clock.  A worker that
dies stops renewing its leases; when they expire another worker takes the tasks and
resumes each from its last committed step.  A step is committed only if its lease (same
worker, same epoch) still stands, so no task ever runs twice at once.  A worker's
liveness lock (``Store.hold_worker``) lets others see at once that it has gone.

Faults: a store that cannot commit (``StoreUnavailable``) is waited out — the steps wait
to be committed, the worker says so on stderr and tries again with a growing pause —
and a task whose record, state or code cannot be read fails (or, for code this worker
cannot load, waits for a worker that can) alone.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import time
from collections.abc import Callable

from ..codec import CodecError, Image, encode_machine
from ..connectors.http_request import http_spec
from ..limits import set_state_limit
from ..machine import Machine, call_state
from ..primitives.effects import TaskId
from ..store.base import OUTBOX_KINDS, NewTask, Request, StepCommit, StoreError, StoreUnavailable
from ..store.callbacks import digest as callback_digest
from ..values import TRUE, Map, kw
from .code import (
    CodeUnavailable,
    base_globals,
    code_of,
    load_program,
    program_machine,
    task_machine,
)
from .records import (
    AnswerKind,
    Limits,
    TaskRecord,
    decode_data,
    encode_data,
    new_task_id,
)
from .slices import Interrupted, count_frames, run_slice, stop_requested

K_TYPE, K_OP = kw("type"), kw("op")
K_REQUEST, K_OPTIONS = kw("request"), kw("options")
K_SEQ, K_MESSAGE, K_DEADLINE = kw("seq"), kw("message"), kw("deadline")
DRAFT_MODES = ("auto", "always", "never")
TEXT_LIMIT = 200     # characters of a request or error kept in the event log
TEXTS_KEPT = 256     # HTTP requests' log texts kept for the next request of the same map
BACKOFF_MAX = 5.0    # seconds between attempts while the store cannot commit
PUMP_EVERY = 0.002   # seconds of steps between runs of a connector's event loop in a round
ATOMS = frozenset({int, float, str, type(None), TaskId})
# Machines of committed states kept for later (a task let go of while it waits): at most
# this many bytes of states, and this many machines (one in memory is some 10-30 kB,
# however small its state: a worker with 100,000 tasks asleep must not keep them all).
PARKED_BYTES = 8 << 20
PARKED_MAX = 512
WAITING_OPS = frozenset({"sleep", "next-message", "join", "http", "await", "select",
                         "task-event"})
# The requests of sequence runs (``sequences.effects``): their arguments as JSON data.
SEQUENCE_OPS = frozenset({"task-event", "enqueue-run", "evaluations", "sequence-run"})
# ``(now)`` asks with no arguments: every step that asks it shares one request (requests
# are never changed once made).
NOW_REQUEST = Request("now")


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


def short_text(value: object, limit: int = TEXT_LIMIT) -> str:
    """A value printed for a log line, cut at ``limit`` characters; a value too big to
    print quickly is described instead (also inside a collection: only about ``limit``
    characters are ever printed)."""
    from .inspect import value_text

    return value_text(value, limit)


def error_message(error: object) -> str:
    """The message of an error value, for the log."""
    if type(error) is Map:
        message = error.get(kw("message"))
        if type(message) is str:
            return message[:TEXT_LIMIT]
    return short_text(error)


class _RunAhead:
    """Runs the tasks a round claimed while the store sends its commit (``Store.round``'s
    ``on_sent``, called with the round as it is once that commit is done): a task's
    next slice needs only its answer and record, both known before the commit comes
    back.  What it ran is used only if that very round comes back committed; otherwise
    the machines it ran are dropped (``undo``) and the tasks run again from the states
    their steps committed (an attempt that fails and is tried again calls it twice)."""

    def __init__(self, worker: Worker, steps: list[StepCommit]):
        self.worker = worker
        self.steps = steps
        self.result = None  # the round it ran the claimed tasks of
        self.calls = 0
        self.ran: set[str] = set()
        self.pending: list[StepCommit] = []
        self.error: BaseException | None = None  # raised once the round is committed

    @functools.cached_property
    def states(self) -> dict[str, bytes]:
        """The state each step commits, by task (made only for a store that calls)."""
        return {s.task_id: s.state for s in self.steps if s.state is not None}

    def __call__(self, result) -> None:
        self.calls += 1
        self.result = None
        if self.calls > 1:
            return  # another attempt of the round: what ran is undone after it
        w = self.worker
        # A task claimed without its state must have its machine kept, or a state to
        # start again from if this is undone.
        states = self.states
        if any(c.state is None and (c.record.id not in w.machines or
                                    c.record.id not in states) for c in result.claimed):
            return
        self.result = result
        try:
            w._take_round(self.steps, result)
            w._run_claimed(result, None, {}, self.pending, self.ran)
        except BaseException as exc:  # (raised by the worker's round, after the commit)
            self.error = exc

    def drop(self) -> None:
        """Drop the machines this ran: they are past their committed states."""
        for task_id in self.ran:
            self.worker.machines.pop(task_id, None)
        self.ran.clear()

    def undo(self) -> None:
        """``drop``, and raise an interrupt met while running the tasks."""
        self.drop()
        error, self.error = self.error, None
        if error is not None and not isinstance(error, Exception):
            raise error


class Worker:
    """Runs the tasks of a store; ``round()`` does one round, ``run()`` loops."""

    def __init__(self, store, worker_id: str | None = None, slice_size: int = 10_000,
                 batch: int = 64, lease_seconds: float = 30.0, poll: float = 0.05,
                 draft: str = "auto", log: Callable[[str], None] | None = None):
        if draft not in DRAFT_MODES:
            raise ValueError(f"draft must be one of {', '.join(DRAFT_MODES)}")
        self.store = store
        self.draft = draft
        self.id = worker_id or \
            f"{os.uname().nodename}:{os.getpid()}:{os.urandom(4).hex()}"
        self.slice_size = slice_size
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.poll = poll
        self.pending: list[StepCommit] = []
        self.machines: dict[str, tuple[int, Machine]] = {}
        # Machines of tasks this worker ran but no longer holds (most wait for an answer),
        # by their last committed state: a task resumed here from that same state takes
        # its machine back instead of decoding it (``_machine``); oldest dropped first.
        self.parked: dict[str, tuple[bytes, Machine]] = {}
        self.parked_bytes = 0
        self.answers: dict[str, tuple[int, object]] = {}
        self.texts: dict[int, tuple[object, tuple, str]] = {}  # see ``_request_text``
        self.watch: str | None = None          # whose output to take at each round
        self.on_output: Callable[[list[tuple[str, str]]], None] | None = None
        self.on_round: Callable[[object], None] | None = None
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.lock = None
        self.unavailable_since: float | None = None
        self.backoff = 0.0
        # A connector whose claims and settlements are part of this worker's rounds
        # (``connectors.http.HttpConnector``).
        self.connector = None
        self.connector_work = 0

    # -- one round ------------------------------------------------------------------

    def hold(self) -> None:
        """Register with the store and take this worker's liveness lock (once)."""
        if self.lock is None:
            self.lock = self.store.hold_worker(self.id, os.uname().nodename, os.getpid())

    def round(self, stopping: bool = False) -> int:
        """Commit the last round's steps, fire timers, lease and run tasks.

        Returns how many steps were run (0 means there was nothing to do, or the store
        could not commit: then the steps wait for the next round).
        """
        self.hold()
        steps = self.pending
        part = None
        connector = self.connector
        if connector is not None and not stopping:
            connector.pump()  # (its event loop, when it runs in this thread)
            asked = any(_makes_outbox_entry(s.request) for s in steps)
            part = connector.round_part(asked)
        if stopping:
            for step in steps:
                step.keep_lease = False
        held = {t: e for t, (e, _) in self.machines.items()}
        # The tasks a round claims are run while its commit is on its way, when the
        # store can say when that is (``on_sent``) and no connector shares the round.
        ahead = _RunAhead(self, steps) if part is None and not stopping else None
        try:
            result = self.store.round(self.id, steps, 0 if stopping else self.batch,
                                      self.lease_seconds, held, self.watch, part,
                                      on_sent=ahead)
        except StoreUnavailable as exc:
            if ahead is not None:
                ahead.undo()
            if part is not None:
                self.connector.round_failed(part)
            self._unavailable(exc)
            if stopping:
                raise
            return 0
        except StoreError:
            if ahead is not None:
                ahead.undo()
            if part is not None:
                self.connector.round_failed(part)
            raise
        except Exception:
            if part is not None:
                self.connector.round_failed(part)
            # A step the runtime cannot commit must fail its task, not every worker:
            # commit the steps one by one and fail the one that breaks.
            self.machines.clear()
            self.pending = []
            self._commit_singly(steps)
            return 0
        except BaseException:
            if ahead is not None:
                ahead.drop()
            raise
        ran_ahead = ahead is not None and ahead.result is result
        if ahead is not None and not ran_ahead:
            ahead.undo()  # (it ran for an attempt of the round that was not committed)
        if self.unavailable_since is not None:
            self.log(f"flowmetal worker {self.id}: the store commits again "
                     f"(after {time.monotonic() - self.unavailable_since:.1f} s)")
            self.unavailable_since, self.backoff = None, 0.0
        self.pending = []
        if part is not None:
            self.connector_work = connector.round_done(part, result)
            connector.pump()  # the requests claimed are sent now
        if result.output and self.on_output is not None:
            self.on_output(result.output)
        if self.on_round is not None:
            self.on_round(result)
        if ran_ahead:
            self.pending = ahead.pending
            if ahead.error is not None:
                raise ahead.error
        else:
            self._take_round(steps, result)
            states = ahead.states if ahead is not None and ahead.calls else {}
            self._run_claimed(result, part, states, self.pending)
        if self.pending and self.draft != "never" and not stop_requested():
            self.store.prepare(self.id, self.pending, self.lease_seconds,
                               always=self.draft == "always")
        return len(self.pending)

    def _take_round(self, steps: list[StepCommit], result) -> None:
        """Keep the machines of the tasks the round claimed again (and park the others'
        with their committed states), and its answers."""
        for step, ok in zip(steps, result.committed):
            if not ok or step.status not in ("runnable", "waiting"):
                self.machines.pop(step.task_id, None)
        self.answers = result.answers
        claimed = {c.record.id for c in result.claimed}
        states = {s.task_id: s.state for s, ok in zip(steps, result.committed)
                  if ok and s.state is not None}
        for task_id in [t for t in self.machines if t not in claimed]:
            _, m = self.machines.pop(task_id)
            if task_id in states:
                self._park(task_id, states[task_id], m)

    def _run_claimed(self, result, part, states: dict[str, bytes], pending: list[StepCommit],
                     ran: set[str] | None = None) -> None:
        """Run a slice of each task the round claimed, adding their steps to ``pending``
        (so that what ran before an error is still committed).  ``states``: the committed
        state of a task claimed without one whose machine is not kept any more (see
        ``_RunAhead``); ``ran`` collects the tasks run."""
        connector = self.connector
        pumped = time.monotonic()
        for c in result.claimed:
            if stop_requested():
                break  # asked to stop: what is not run keeps its last committed step
            state = c.state
            if state is None and c.record.id not in self.machines:
                state = states.get(c.record.id)
            if ran is not None:
                ran.add(c.record.id)
            try:
                pending.append(self._run(c.record, state))
            except Interrupted:
                self.machines.pop(c.record.id, None)
                break
            if part is not None and time.monotonic() - pumped > PUMP_EVERY:
                connector.pump()  # long steps hold up no request's bytes for long
                pumped = time.monotonic()

    def _unavailable(self, exc: Exception) -> None:
        """The store cannot commit: say so once, and wait a growing while."""
        if self.unavailable_since is None:
            self.unavailable_since = time.monotonic()
            self.log(f"flowmetal worker {self.id}: the store cannot commit ({exc}); "
                     "keeping the last committed steps and trying again")
        self.backoff = min(BACKOFF_MAX, max(0.05, self.backoff * 2))
        time.sleep(self.backoff)

    def _commit_singly(self, steps: list[StepCommit]) -> None:
        for step in steps:
            try:
                self.store.commit_one(self.id, step, self.lease_seconds)
            except StoreError:
                raise
            except Exception as exc:
                self.store.fail_task(step.task_id, "internal-error",
                                     f"the step of task {step.task_id} could not be "
                                     f"committed: {type(exc).__name__}: {exc}")

    # -- running a slice ------------------------------------------------------------

    def _machine(self, rec: TaskRecord, state: bytes | None) -> Machine:
        if state is None:
            return self.machines.pop(rec.id)[1]
        parked = self.parked.pop(rec.id, None)
        if parked is not None:
            self.parked_bytes -= len(parked[0])
            if parked[0] == state:  # no step (nor upgrade) since this worker's commit
                return parked[1]
        with self.store.view() as view:
            return task_machine(view, rec, state)

    def _park(self, task_id: str, state: bytes, m: Machine) -> None:
        """Keep the machine of a committed state this worker lets go of."""
        if len(state) > PARKED_BYTES // 64:
            return
        old = self.parked.pop(task_id, None)
        if old is not None:
            self.parked_bytes -= len(old[0])
        self.parked[task_id] = (state, m)
        self.parked_bytes += len(state)
        while self.parked_bytes > PARKED_BYTES or len(self.parked) > PARKED_MAX:
            dropped, _ = self.parked.pop(next(iter(self.parked)))
            self.parked_bytes -= len(dropped)

    def _run(self, rec: TaskRecord, state: bytes | None) -> StepCommit:
        epoch = rec.lease.epoch
        try:
            m = self._machine(rec, state)
        except CodeUnavailable as exc:
            return StepCommit(rec.id, epoch, "runnable", rec.reductions, rec.steps,
                              keep_lease=False, blocked=str(exc))
        except (CodecError, KeyError) as exc:
            return self._failed(rec, epoch, "corrupt-state",
                                f"task {rec.id} cannot be resumed: {exc}")
        except Exception as exc:  # a continuation that is not even CBOR
            return self._failed(rec, epoch, "corrupt-state",
                                f"task {rec.id} cannot be resumed: {type(exc).__name__}")
        m.task_id = rec.id
        took_answer = cancel_delivered = False
        answer = rec.answer
        if m.status == "waiting" and answer is not None:
            try:
                value = self._answer_value(rec, answer)
            except Exception as exc:
                return self._failed(rec, epoch, "corrupt-state",
                                    f"task {rec.id}: its answer cannot be read: "
                                    f"{type(exc).__name__}: {exc}")
            if answer.ok or answer.arm is not None:
                m.answer(value)
            else:
                m.answer_error(value)
            took_answer = True
        if rec.cancel and not rec.cancel_delivered and m.status != "done":
            from ..store.engine import task_error

            cancel = task_error("cancelled", f"task {rec.id} was cancelled")
            if m.status == "waiting":
                m.answer_error(cancel)
            elif m.status == "running":
                m.interrupt(cancel)
            cancel_delivered = True
        output, consumed = "", ()
        if m.status == "running":
            output, consumed = self._slice(rec, m)
        try:
            step = self._settle(rec, m, epoch)
        except CodecError as exc:  # a value the runtime cannot store: this task's fault
            self.machines.pop(rec.id, None)
            return self._failed(rec, epoch, "internal-error",
                                f"task {rec.id}: its state cannot be stored: {exc}")
        step.took_answer = took_answer
        step.cancel_delivered = cancel_delivered
        step.output = output
        step.consumed = consumed
        return step

    def _answer_value(self, rec: TaskRecord, answer) -> object:
        """The value the task sees for its stored answer (a select's: ``{:index :op
        :value}``, or ``:error`` in place of ``:value`` when its arm failed)."""
        value = self._arm_value(rec, answer)
        if answer.arm is None:
            return value
        return Map({kw("index"): answer.arm, K_OP: kw(answer.arm_op),
                    kw("value" if answer.ok else "error"): value})

    def _arm_value(self, rec: TaskRecord, answer) -> object:
        given = self.answers.get(rec.id)
        if answer.kind == AnswerKind.VALUE:
            if given is not None and given[0] == answer.request:
                return given[1]
            return decode_data(answer.value)
        if answer.kind == AnswerKind.MESSAGE:
            return Map({K_SEQ: answer.seq, K_MESSAGE: decode_data(answer.value),
                        K_DEADLINE: answer.deadline})
        from ..store.engine import task_error

        return task_error("task-failed", f"task {answer.task} {answer.status}",
                          Map({kw("task"): TaskId(answer.task),
                               kw("error"): decode_data(answer.value)}))

    def _slice(self, rec: TaskRecord, m: Machine) -> tuple[str, tuple[int, ...]]:
        fuel = self.slice_size
        if not rec.trace:
            # Committing a step costs in proportion to the state's size: let a big state
            # run longer between commits, so that cost stays a bounded share of the work.
            fuel = max(fuel, rec.state_bytes // 4)
        limit = rec.limits.fuel
        if limit is not None:
            fuel = max(0, min(fuel, limit - m.reductions))
        m.output = []
        m.write = m.output.append
        m.consumed = []
        depth = rec.limits.depth
        frames = getattr(m, "frames", None)
        if frames is None:
            frames = count_frames(m.k, depth)
        if fuel:
            previous = set_state_limit(rec.limits.state)
            try:
                frames = run_slice(m, fuel, depth, frames)
            finally:
                set_state_limit(previous)
        m.frames = frames
        return "".join(m.output), tuple(m.consumed)

    def _settle(self, rec: TaskRecord, m: Machine, epoch: int) -> StepCommit:
        limits = rec.limits
        step = StepCommit(rec.id, epoch, "runnable", m.reductions, rec.steps)
        if m.status == "running" and limits.fuel is not None and m.reductions >= limits.fuel:
            return self._limit(rec, step, "fuel", f"fuel of {limits.fuel} reductions used up")
        request = None
        if m.status == "waiting":
            try:
                request = self._request(rec, m)
            except Exception as exc:  # an argument that cannot be encoded
                from ..store.engine import task_error

                m.answer_error(task_error("effect-error", f"{type(exc).__name__}: {exc}"))
                m.run(0)
        if m.status in ("running", "waiting"):
            image = getattr(m, "image", None)
            if image is None:
                image = m.image = Image(base_globals(m))
            # Judged before encoding: a too deep state is never encoded.  ``frames`` (see
            # slices.run_slice) bounds the frames; they are counted when it is over.
            frames = getattr(m, "frames", None)
            if (frames is None or frames > limits.depth) and \
                    count_frames(m.k, limits.depth) > limits.depth:
                return self._limit(rec, step, "depth",
                                   f"continuation deeper than {limits.depth} frames")
            step.state = image.encode(m)
            if len(step.state) > limits.state:
                # Perhaps only unreachable records: encode afresh before judging.
                image.reset()
                step.state = image.encode(m)
            if len(step.state) > limits.state:
                return self._limit(rec, step, "state", f"state of {len(step.state)} bytes "
                                                       f"exceeds {limits.state}")
            step.programs = image.code()
        if m.status == "running":
            self.machines[rec.id] = (epoch, m)
        elif m.status == "waiting":
            step.status = "waiting"
            step.request = request
            # Kept for the next round, in case the answer is immediate (now, send...).
            self.machines[rec.id] = (epoch, m)
        elif m.status == "done":
            step.status, step.result = "done", encode_data(m.val)
        else:
            error = m.error
            cancelled = type(error) is Map and error.get(K_TYPE) == kw("cancelled")
            step.status = "cancelled" if cancelled and rec.cancel else "failed"
            step.error = encode_data(error)
            step.error_text = error_message(error)
        if step.status not in ("runnable", "waiting"):
            self.machines.pop(rec.id, None)
        return step

    def _request(self, rec: TaskRecord, m: Machine) -> Request:
        """The machine's request as plain data, its values encoded (a spawn's new task
        made here, outside any transaction)."""
        req = m.request
        op = req.get(K_OP).name

        def arg(name: str) -> object:
            return req.get(kw(name))

        # Only a request the task may wait on is logged as a request (the others are
        # answered in the commit that makes them, and logged by their answer).
        if op == "now":
            return NOW_REQUEST
        out = Request(op, self._request_text(req, op) if op in WAITING_OPS else "")
        if op == "sleep":
            out.seconds = arg("seconds")
        elif op == "random":
            out.below = arg("below")
        elif op == "send":
            out.to, out.message = arg("to"), encode_data(arg("message"))
        elif op == "next-message":
            deadline = arg("deadline")
            out.after, out.timeout = arg("after"), arg("timeout")
            out.deadline = deadline if deadline is None or type(deadline) in (int, float) \
                else "not a number"
        elif op == "join":
            out.task, out.timeout = arg("task"), arg("timeout")
        elif op == "cancel":
            out.task = arg("task")
        elif op == "spawn":
            self._spawn(rec, m, arg("target"), tuple(arg("args") or ()), out)
        elif op == "env":
            out.to = arg("name")
        elif op == "http":
            made = getattr(m, "http_spec", None)  # by the primitive, in this slice
            if made is not None and made[0] is req:
                spec = made[1]  # (shared: read only)
            else:
                options = {key.name: value for key, value in (arg("options") or {}).items()}
                spec = http_spec(arg("request"), options)
            m.http_spec = None
            out.spec = spec.as_dict(rec.limits.response_body)
            out.timeout = spec.timeout
        elif op == "callback":
            out.spec = {"timeout": arg("timeout"), "multi": arg("multi") is TRUE,
                        "secret": arg("secret")}
        elif op == "await":
            out.spec, out.timeout = {"digest": callback_digest(arg("token"))}, arg("timeout")
        elif op == "select":
            out.spec = {"arms": [self._arm(rec, arm) for arm in arg("arms")]}
            out.timeout = arg("timeout")
        elif op in SEQUENCE_OPS:
            from ..json_values import to_plain

            out.spec, out.timeout = to_plain(arg("spec")), arg("timeout")
        return out

    def _request_text(self, req: Map, op: str) -> str:
        """The request as its log entry shows it.  An HTTP request's text is kept for the
        next one made of the same request map and option values (the same objects: a
        loop's literal map), since values are immutable and print the same."""
        if op != "http":
            return short_text(req)
        request, options = req.get(K_REQUEST), req.get(K_OPTIONS)
        given = tuple(x for item in options.items() for x in item) \
            if type(options) is Map else (options,)
        kept = self.texts.get(id(request))
        if kept is not None and kept[0] is request and len(kept[1]) == len(given) and \
                all(a is b for a, b in zip(kept[1], given)):
            return kept[2]
        text = short_text(req)
        if len(self.texts) >= TEXTS_KEPT:
            self.texts.clear()
        self.texts[id(request)] = (request, given, text)
        return text

    @staticmethod
    def _arm(rec: TaskRecord, arm: Map) -> dict:
        """One arm of a select as plain data (checked by the primitive already)."""
        op = arm.get(K_OP).name
        if op == "receive":
            return {"op": op, "after": arm.get(kw("after")) or 0}
        if op == "await":
            return {"op": op, "digest": callback_digest(arm.get(kw("token")))}
        if op == "join":
            return {"op": op, "task": arm.get(kw("task")).id}
        options = {key.name: value for key, value in (arm.get(kw("options")) or {}).items()}
        spec = http_spec(arm.get(kw("request")), options, rec.limits.response_body)
        return {"op": op, "spec": spec.as_dict()}

    def _spawn(self, rec: TaskRecord, parent: Machine, target: object, args: tuple,
               out: Request) -> None:
        from ..store.engine import task_error

        try:
            if type(target) is str:
                with self.store.view() as view:
                    digest = rec_spawnable(rec, target) or view.resolve(target)
                    if digest is None:
                        raise CodeUnavailable(f"no program {target!r} in the store (start "
                                              "it from a file that names it, or deploy it)")
                    program = load_program(view, digest)
                    m = program_machine(view, program, args, program.file)
                name = os.path.basename(target)
            else:
                program_hash = rec.program
                m = Machine(dict(parent.globals), own=dict(parent.own))
                m.node, m.env, m.k, m.val = call_state(target, args)
                program = None
                name = f"{rec.name}/{getattr(target, 'name', 'fn')}"
        except Exception as exc:
            out.error = encode_data(task_error("spawn-error", f"spawn: {exc}"))
            return
        programs: set = set()
        state = encode_machine(m, base_globals(m if program else parent), programs)
        child_id = new_task_id()
        child = TaskRecord(child_id, name, program.hash if program else program_hash,
                           parent=rec.id, root=rec.root or rec.id,
                           limits=Limits.of(rec.limits), trace=rec.trace,
                           programs=list(code_of(m, programs | {program.hash if program
                                                                else program_hash})),
                           spawnable=dict(rec.spawnable))
        out.child = NewTask(child, state, {"parent": rec.id, "name": name})

    def _limit(self, rec: TaskRecord, step: StepCommit, limit: str, message: str
               ) -> StepCommit:
        from ..store.engine import task_error

        self.machines.pop(rec.id, None)
        step.state = None
        step.status = "failed"
        step.error = encode_data(task_error("limit-error", message,
                                            Map({kw("limit"): kw(limit)})))
        step.error_text = message
        return step

    def _failed(self, rec: TaskRecord, epoch: int, kind: str, message: str) -> StepCommit:
        from ..store.engine import task_error

        self.machines.pop(rec.id, None)
        return StepCommit(rec.id, epoch, "failed", rec.reductions, rec.steps,
                          error=encode_data(task_error(kind, message)), error_text=message)

    # -- loops ----------------------------------------------------------------------

    def run(self, until: Callable[[], bool] | None = None, idle_exit: bool = False) -> None:
        """Work until ``until()`` is true (or, with ``idle_exit``, nothing is left to do
        now or later); leases are released on the way out."""
        try:
            while until is None or not until():
                if self.round() == 0:
                    if idle_exit and not self.pending and not self._anything_left():
                        break
                    self.idle()
        finally:
            self.stop()

    def stop(self) -> None:
        """Commit what is pending without keeping leases, and let go of the store."""
        try:
            self.round(stopping=True)
            if stop_requested():  # tasks claimed but not run (or abandoned) are let go
                self.store.release(self.id)
            if self.connector is not None:
                self.connector.stop()
        finally:
            if self.lock is not None:
                with contextlib.suppress(StoreError):  # the store may be away: that is fine
                    self.store.forget_worker(self.id)
                self.lock.release()
                self.lock = None

    def _anything_left(self) -> bool:
        with self.store.view() as view:
            return view.has_work()

    def idle(self) -> None:
        """Wait a little for work: until the next timer, at most ``poll`` seconds (or
        until a connector's request ends)."""
        if self.pending or self.connector_work:
            return
        with self.store.view() as view:
            due = view.next_timer()
            now = view.clock()
        delay = self.poll if due is None else min(self.poll, max(0.0, due - now))
        if self.connector is not None and self.connector.busy:
            self.connector.wait(delay)
        elif delay > 0:
            self.store.wait_for_work(delay)


def _makes_outbox_entry(request: Request | None) -> bool:
    """Whether committing this request puts an entry in the outbox."""
    if request is None:
        return False
    if request.op == "select":
        return any(arm.get("op") in OUTBOX_KINDS for arm in (request.spec or {}).get("arms", ()))
    return request.op in OUTBOX_KINDS


def rec_spawnable(rec: TaskRecord, name: str) -> str | None:
    """The program hash the task's spawn table gives ``name``."""
    return rec.spawnable.get(name)
