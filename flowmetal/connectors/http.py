"""The HTTP request connector: makes the HTTP requests tasks put in the outbox.

``HttpConnector`` claims ``http`` entries from the store with a lease, makes each
attempt with aiohttp on an event loop (many at once), and settles what the attempts
did back in the store in one transaction per batch: the response delivered to the
task, or the next attempt scheduled by the retry policy.  Only the thread that calls
``tick`` uses the store, so the connector can run inside a worker (``flowmetal run``,
``flowmetal worker``) or on its own (``flowmetal connector http``).  Its event loop runs
in a thread of its own, or (``threaded=False``) in the caller's thread, when the caller
calls ``pump`` between its rounds and ``wait`` when it has nothing else to do: one
thread then does everything, with no turns to take on the interpreter's lock.  Every
attempt at a request carries the same ``Idempotency-Key`` header, also when a connector
is killed and another takes the entry over after its lease expires; leases are renewed
while an attempt runs.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..runtime.records import encode_data
from ..store.base import OutboxRound, StoreError
from ..store.engine import task_error
from ..store.outbox import OutboxClaim, OutboxResult
from ..values import Map, kw
from .http_request import HttpSpec, response_value

if TYPE_CHECKING:  # asyncio and aiohttp are imported when the first request is made
    import asyncio

    import aiohttp

KIND = "http"
LEASE_SECONDS = 15.0     # an entry's lease; renewed while its attempt runs
CLAIM_EVERY = 0.2        # seconds between looks at the outbox when not told of new work
CHUNK = 64 * 1024
KEPT = 256               # parsed URLs and timeouts kept for the next attempts
# On its own, the connector lets attempts end for this long after each transaction, so
# that the next one (and its sync to disk) settles many of them, not one or two.
GATHER = 0.005
DRAIN = 64               # most event-loop iterations one ``pump`` runs


class HttpConnector:
    """Claims, attempts and settles the store's HTTP requests (see the module)."""

    def __init__(self, store: Any, connector_id: str | None = None, concurrency: int = 100,
                 lease_seconds: float = LEASE_SECONDS,
                 log: Callable[[str], None] | None = None, threaded: bool = True):
        self.store = store
        self.threaded = threaded           # the event loop has a thread of its own
        self._stop_on_end = False          # (not threaded) ``wait`` stops at an end
        self.id = connector_id or \
            f"{os.uname().nodename}:{os.getpid()}:http:{os.urandom(4).hex()}"
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.log = log or (lambda text: None)
        self.inflight: dict[tuple[str, int], OutboxClaim] = {}
        self.done: queue.SimpleQueue[OutboxResult] = queue.SimpleQueue()
        self.ready = threading.Event()     # an attempt ended
        self.hint = True                   # new entries may be in the outbox
        self._last_claim = 0.0
        self.next_due = float("inf")       # monotonic time a retry it scheduled is due
        self._last_renew = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._attempts: set[asyncio.Task] = set()
        self._urls: dict[str, Any] = {}        # URL text -> parsed (the event loop's)
        self._timeouts: dict[tuple, Any] = {}  # (total, connect, read) -> ClientTimeout

    # -- the store side (the caller's thread) ----------------------------------------

    @property
    def busy(self) -> bool:
        """Whether attempts are running or waiting to be settled, or a retry is due
        within a claim interval."""
        return bool(self.inflight) or not self.done.empty() or \
            self.next_due - time.monotonic() < CLAIM_EVERY

    def tick(self) -> int:
        """Settle the attempts that ended and claim more, in one transaction (renewing
        leases first when due); how many entries were settled or claimed."""
        part = self.round_part(False)
        if not part.results and not part.limit:
            return 0
        try:
            result = self.store.round(self.id, [], 0, self.lease_seconds, outbox=part)
        except BaseException:
            self.round_failed(part)
            raise
        return self.round_done(part, result)

    # -- inside a worker's round -------------------------------------------------------

    def round_part(self, asked: bool) -> OutboxRound:
        """What this connector does in a worker's round: settle the attempts that ended
        and claim: the entries the round's steps make (``asked``: they make some), and
        others when there may be some due.  Renews its leases first, in a transaction of
        its own, when due."""
        now = time.monotonic()
        if self.inflight and now - self._last_renew > self.lease_seconds / 3:
            self._renew()
            self._last_renew = now
        self.ready.clear()
        results = self._drain()
        room = self.concurrency - len(self.inflight) + len(results)
        scan = self._scan_now(room, now)
        return OutboxRound(self.id, (KIND,), results, room if scan or asked else 0,
                           self.lease_seconds, scan)

    def _scan_now(self, room: int, now: float) -> bool:
        """Whether to look for due entries in the outbox: there is room, and some may be
        due (told so, a retry is due, or a claim interval has passed); if so, the look
        is counted as made."""
        if room <= 0 or not (self.hint or now >= self.next_due or
                             now - self._last_claim >= CLAIM_EVERY):
            return False
        self.hint = False
        self.next_due = float("inf")
        self._last_claim = now
        return True

    def round_done(self, part: OutboxRound, result: Any) -> int:
        """The round committed: forget what it settled, start what it claimed; how many
        of either."""
        self._forget(part.results)
        self._start(result.outbox_claimed)
        return len(part.results) + len(result.outbox_claimed)

    def round_failed(self, part: OutboxRound) -> None:
        """The round was not committed: its results are settled by a later one."""
        for r in part.results:
            self.done.put(r)
        self.hint = True

    def _drain(self) -> list[OutboxResult]:
        results = []
        while True:
            try:
                results.append(self.done.get_nowait())
            except queue.Empty:
                return results

    def _forget(self, results: list[OutboxResult]) -> None:
        now = time.monotonic()
        for r in results:
            self.inflight.pop((r.task_id, r.request), None)
            if r.retry_in is not None:
                self.next_due = min(self.next_due, now + r.retry_in)

    def _renew(self) -> None:
        held = [(c.task_id, c.request, c.entry.epoch) for c in self.inflight.values()]
        kept = self.store.outbox_renew(self.id, held, self.lease_seconds)
        for (task_id, request, _), ok in zip(held, kept):
            # (None: the task no longer waits for it, as when a select took another arm)
            if ok is False:  # taken over (this connector was too slow): its result is refused
                self.log(f"flowmetal connector {self.id}: lost the lease on request "
                         f"{request} of task {task_id}")

    def wait(self, timeout: float) -> None:
        """Wait until an attempt ends or a retry is due, at most ``timeout`` seconds."""
        timeout = max(0.0, min(timeout, self.next_due - time.monotonic()))
        if self.threaded or self._loop is None:
            self.ready.wait(timeout)
        else:
            self.pump(timeout)

    def pump(self, timeout: float = 0.0) -> None:
        """Without a thread of its own: run the event loop, so that the attempts started
        are sent and what has arrived is read, until nothing more is ready (waiting up
        to ``timeout`` seconds for an attempt to end when none has).  Threaded: nothing
        to do."""
        loop = self._loop
        if self.threaded or loop is None:
            return
        if timeout > 0 and self.done.empty():
            self._stop_on_end = True
            timer = loop.call_later(timeout, loop.stop)
            try:
                loop.run_forever()
            finally:
                timer.cancel()
                self._stop_on_end = False
        # One iteration at a time until one leaves nothing ready: asyncio's queue of
        # ready callbacks (``_ready``, every BaseEventLoop's); without it, a few.
        ready = getattr(loop, "_ready", None)
        for _ in range(DRAIN if ready is not None else 4):
            loop.call_soon(loop.stop)
            loop.run_forever()
            if ready is not None and not ready:
                break

    def run(self, until: Callable[[], bool] | None = None, poll: float = 0.5) -> None:
        """Work until ``until()`` is true (forever without it); leases are given up on
        the way out.  A thread waits for the store's wake-ups, so entries are claimed
        as soon as a commit makes them (or, should a wake-up be lost, at the next claim
        interval); ``poll`` bounds how long ``until`` goes unasked."""
        stopping = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(stopping,), daemon=True,
                                   name=f"flowmetal-wakeups-{self.id}")
        watcher.start()
        try:
            while until is None or not until():
                if self.tick():
                    time.sleep(GATHER)
                    continue
                self.wait(min(poll, CLAIM_EVERY))
        finally:
            stopping.set()
            watcher.join()
            self.stop()

    def _watch(self, stopping: threading.Event) -> None:
        """Tell ``run`` that new entries may be due whenever the store says work came
        (and at every claim interval)."""
        while not stopping.is_set():
            try:
                self.store.wait_for_work(CLAIM_EVERY)
            except StoreError:  # the store is away: ``tick`` says so; look again later
                stopping.wait(CLAIM_EVERY)
            self.hint = True
            self.ready.set()

    def stop(self) -> None:
        """Settle what has ended, give up the other leases, and close the HTTP client."""
        try:
            self.settle()
            if self.inflight or self._thread is not None:
                self.store.outbox_release(self.id)
        finally:
            self.inflight.clear()
            self._close()

    def settle(self) -> int:
        """Settle the attempts that have ended (claiming nothing); how many."""
        results = self._drain()
        if results:
            try:
                self.store.outbox_settle(self.id, results)
            except BaseException:
                for r in results:
                    self.done.put(r)
                raise
            self._forget(results)
        return len(results)

    # -- the HTTP side (the connector's event loop) ------------------------------------

    def _start(self, claims: list[OutboxClaim]) -> None:
        """Make the claimed entries' attempts on the event loop (all at once: one
        wake-up of its thread, not one per request)."""
        if not claims:
            return
        for claim in claims:
            self.inflight[(claim.task_id, claim.request)] = claim
        if self._loop is None and not self.threaded:
            import asyncio

            self._loop = asyncio.new_event_loop()
        elif self._loop is None:
            ready = threading.Event()
            self._thread = threading.Thread(target=self._serve, args=(ready,),
                                            name=f"flowmetal-http-{self.id}", daemon=True)
            self._thread.start()
            ready.wait()
        assert self._loop is not None
        if self.threaded:
            self._loop.call_soon_threadsafe(self._attempt_all, claims)
        else:
            self._attempt_all(claims)  # sent at the next ``pump``

    def _attempt_all(self, claims: list[OutboxClaim]) -> None:
        create = self._loop.create_task
        for claim in claims:
            task = create(self._attempt(claim))
            self._attempts.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._attempts.discard)

    def _serve(self, ready: threading.Event) -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or (thread is None and self.threaded):
            return
        import asyncio

        async def shut() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            if self._session is not None:
                await self._session.close()
                self._session = None
            if self.threaded:
                loop.stop()

        if self.threaded:
            asyncio.run_coroutine_threadsafe(shut(), loop)
            thread.join(timeout=5)
        else:
            try:
                loop.run_until_complete(shut())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
        self._loop = self._thread = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            # No cookie jar: a cookie set by the answer to one task's request is no
            # business of another task's requests (and keeping none costs nothing).
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max(1, self.concurrency)),
                cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False)
        return self._session

    def _url(self, url: str) -> Any:
        """The URL parsed (kept: tasks call the same URLs again and again), or the text
        itself when it does not parse (aiohttp then says what is wrong with it)."""
        parsed = self._urls.get(url)
        if parsed is None:
            from yarl import URL

            try:
                parsed = URL(url)
            except ValueError:
                return url
            if len(self._urls) >= KEPT:
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    async def _attempt(self, claim: OutboxClaim) -> None:
        try:
            result = await self._request(claim)
        except Exception as exc:  # a bug here must still answer the task
            spec = claim.entry.spec
            result = _final(claim, claim.entry.attempts + 1, False, encode_data(task_error(
                "http-error", f"http: the connector failed: {type(exc).__name__}: {exc}",
                Map({kw("url"): spec.get("url"), kw("method"): spec.get("method"),
                     kw("attempts"): claim.entry.attempts + 1, kw("status"): None,
                     kw("reason"): f"{type(exc).__name__}: {exc}"}))))
        self.done.put(result)
        if self._stop_on_end:
            self._stop_on_end = False
            self._loop.stop()
        elif not self.ready.is_set():
            self.ready.set()

    async def _request(self, claim: OutboxClaim) -> OutboxResult:
        import aiohttp

        entry = claim.entry
        spec = HttpSpec.from_dict(entry.spec)
        attempts = entry.attempts + 1
        headers = list(spec.headers)
        if not any(name.lower() == "idempotency-key" for name, _ in headers):
            headers.append(("Idempotency-Key", entry.key))
        times = (spec.timeout, spec.connect_timeout, spec.read_timeout)
        timeout = self._timeouts.get(times)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=times[0], connect=times[1],
                                            sock_read=times[2])
            if len(self._timeouts) < KEPT:
                self._timeouts[times] = timeout
        started = time.monotonic()
        status, got, body, problem = 0, [], b"", ""
        too_big = False
        try:
            async with self._client().request(
                    spec.method, self._url(spec.url), params=spec.query or None,
                    headers=headers, data=spec.body, timeout=timeout) as resp:
                status = resp.status
                got = [(k.decode("latin-1"), v.decode("latin-1"))
                       for k, v in resp.raw_headers]
                length = resp.content_length
                if spec.method == "HEAD" or status in (204, 304):
                    pass  # no body, whatever Content-Length says (RFC 9110 9.3.2, 15.3.5)
                elif length is not None and "Content-Encoding" not in resp.headers:
                    # The body is as long as it says (aiohttp reads no further).
                    if length > spec.max_body:
                        too_big = True
                    else:
                        body = await resp.read()
                        too_big = len(body) > spec.max_body
                else:
                    chunks, size = [], 0
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        size += len(chunk)
                        if size > spec.max_body:
                            too_big = True
                            break
                        chunks.append(chunk)
                    body = b"".join(chunks)
        except TimeoutError:
            problem = "timed out"
        except aiohttp.ClientError as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        note = {"url": spec.url, "status": status or None,
                "seconds": round(time.monotonic() - started, 6)}
        policy = spec.retry
        if too_big:
            return _failed(claim, attempts, spec, f"the response body exceeds "
                           f"{spec.max_body} bytes", status, note)
        if problem:
            if policy.retry_connection_errors and policy.more(attempts):
                return _retry(claim, attempts, policy.delay(attempts), problem, note)
            return _failed(claim, attempts, spec, problem, None, note)
        if status in policy.non_retryable_statuses:
            return _failed(claim, attempts, spec, f"status {status}", status, note)
        if status in policy.retry_statuses:
            if policy.more(attempts):
                delay = max(policy.delay(attempts), _retry_after(got, policy.maximum_interval))
                return _retry(claim, attempts, delay, f"status {status}", note)
            return _failed(claim, attempts, spec, f"status {status}", status, note)
        answer = response_value(status, got, body)
        return _final(claim, attempts, True, encode_data(answer), note, answer)


def _final(claim: OutboxClaim, attempts: int, ok: bool, value: bytes,
           note: dict | None = None, given: Any = None) -> OutboxResult:
    return OutboxResult(claim.task_id, claim.request, claim.entry.epoch, attempts, ok, value,
                        note=note, given=given)


def _retry(claim: OutboxClaim, attempts: int, delay: float, problem: str, note: dict
           ) -> OutboxResult:
    return OutboxResult(claim.task_id, claim.request, claim.entry.epoch, attempts,
                        retry_in=delay, error_text=problem, note=note)


def _failed(claim: OutboxClaim, attempts: int, spec: HttpSpec, problem: str,
            status: int | None, note: dict) -> OutboxResult:
    data = Map({kw("url"): spec.url, kw("method"): spec.method, kw("attempts"): attempts,
                kw("status"): status, kw("reason"): problem})
    error = task_error("http-error", f"http: {spec.method} {spec.url} failed after "
                       f"{attempts} attempt{'s' if attempts != 1 else ''}: {problem}", data)
    return _final(claim, attempts, False, encode_data(error), note)


def _retry_after(headers: list[tuple[str, str]], most: float) -> float:
    """The seconds a Retry-After header asks for, as a number of seconds or an HTTP date
    (RFC 9110 10.2.3); 0 if none, or neither."""
    for name, value in headers:
        if name.lower() == "retry-after":
            try:
                seconds = float(value)
            except ValueError:
                from email.utils import parsedate_to_datetime

                try:
                    seconds = parsedate_to_datetime(value).timestamp() - time.time()
                except (TypeError, ValueError, IndexError):
                    return 0.0
            return min(most, max(0.0, seconds)) if seconds == seconds else 0.0
    return 0.0
