"""The PostgreSQL store: ``tables.Tables`` in one schema of a PostgreSQL database.

The shared store for several hosts.  ``PostgresStore(url)`` holds a small connection pool;
``read()`` is a REPEATABLE READ, READ ONLY transaction (a listing is one snapshot) and
``write()`` a READ COMMITTED one in which every task record read is locked (``SELECT ...
FOR UPDATE``), or, in a worker's round begun ahead, checked by its version before the
first write; workers claim runnable tasks and due timers with ``FOR UPDATE SKIP LOCKED``.

The URL is a libpq URL or key=value string; the schema is taken from ``?schema=NAME``
(removed before connecting) or from ``options=-csearch_path=NAME``, default ``flowmetal``.

Tables (schema version 3; ``MIGRATIONS`` below):

    meta       key -> value                the schema version ("version")
    tasks      id, the ``TaskColumns``, runnable (NULL or false: not), log_seq and
               output_seq (the last journal numbers, NULL: 0), record (CBOR), version
               (counts every change of the row); indexed only by id, (status, id) and,
               for claiming, (updated, id) WHERE runnable; ``check_tasks(ids, versions)``
               locks rows and fails the transaction if one has another version
    task_keys  id -> program, name, parent, root, created: the columns that never change
               after a task is made, with the listings' indexes.  Kept apart so that a
               step, which rewrites its task's row, inserts into 3 indexes, not 8.
    conts      id -> data                  the continuation (kept in the row up to 8 kB)
    programs   hash -> data                names  name -> hash, updated
    inbox      (task, seq) -> data         timers (due, task, request) -> data
    log        (task, seq) -> data         output (task, seq) -> text
    workers    id -> data, seen
    outbox     (task, request) -> not_before, lease_until, data: requests for connectors
    tokens     digest -> data              access tokens, by the SHA-256 of the token
    callbacks  digest -> task, data        callbacks, by the SHA-256 of their token
    (meta also holds the settings, under 'setting:<key>')

Text keys are ``COLLATE "C"``: ids sort as bytes (as in LMDB) and prefix matches use the
b-tree indexes.

How a write transaction is made cheap: writes are kept in the transaction and sent when
it commits, or earlier when a read needs them, as one statement per table over arrays
(``INSERT ... SELECT FROM unnest(...)``, binary parameters); the whole transaction runs
in pipeline mode on a connection in autocommit mode (BEGIN and COMMIT are statements in
the pipeline), so statements whose results are not needed do not wait for the server.
A transaction costs two round trips: its first read (BEGIN, the clock, the read, and
the claim and due-timers queries asked ahead), and the commit.  A worker's round that
follows its last round costs one: the last round's commit began it (see ``PgTables``).

Journal numbers: a task's last log and output numbers are kept in its ``tasks`` row and
read with its record, so an append needs no ``max(seq)``.  This is safe because the
engine always reads (and so locks) a task's record before appending to its journals or
its inbox; an append to a task not read yet locks its row first.

Wake-ups: a write transaction that marks a task runnable that was not, or arms a timer,
sends ``NOTIFY flowmetal_<schema>`` (delivered at commit); ``wait_for_work`` listens on
a connection of its own.  Worker liveness is a session advisory lock per worker, held
on a connection of its own (``hold_worker``), visible from any host in ``pg_locks``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import itertools
import operator
import random
import re
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg import generators, pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .base import StoreError, StoreRetry, StoreUnavailable
from .tables import TaskColumns, TaskFilter

T = TypeVar("T")

DEFAULT_SCHEMA = "flowmetal"
CONNECT_TIMEOUT = 5.0
IDLE_IN_TRANSACTION_MS = 60_000  # a transaction left open this long (a stopped process)
#                                  is ended by the server, releasing its row locks
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class StoreConflict(StoreRetry):
    """The transaction lost a race (serialization failure, deadlock, lock timeout):
    nothing of it was written, and running it again at once will probably work (the
    engine's ``retrying`` does)."""


# ---------------------------------------------------------------------------------------
# The schema and its migrations: script N (counting from 1) takes version N - 1 to N.

MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE tasks (
        id text COLLATE "C" PRIMARY KEY,
        status text COLLATE "C" NOT NULL,
        program text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        parent text COLLATE "C",
        root text COLLATE "C" NOT NULL,
        created double precision NOT NULL,
        updated double precision NOT NULL,
        lease_worker text,
        lease_until double precision,
        waiting_on text,
        waiting_until double precision,
        runnable boolean,
        log_seq bigint,
        output_seq bigint,
        record bytea NOT NULL
    );
    CREATE INDEX tasks_status ON tasks (status, id);
    CREATE INDEX tasks_claim ON tasks (updated, id) WHERE runnable;
    CREATE TABLE task_keys (
        id text COLLATE "C" PRIMARY KEY,
        program text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        parent text COLLATE "C",
        root text COLLATE "C" NOT NULL,
        created double precision NOT NULL
    );
    CREATE INDEX task_keys_program ON task_keys (program, id);
    CREATE INDEX task_keys_name ON task_keys (name, id) WHERE name <> '';
    CREATE INDEX task_keys_parent ON task_keys (parent, id) WHERE parent IS NOT NULL;
    CREATE INDEX task_keys_root ON task_keys (root, id);
    CREATE INDEX task_keys_created ON task_keys (created);
    -- Rewritten at every step: half-empty pages leave room for HOT updates, and a
    -- continuation up to a page long stays in the row, uncompressed (TOAST would
    -- compress, write and later vacuum it out of line at every update).
    CREATE TABLE conts (id text COLLATE "C" PRIMARY KEY, data bytea NOT NULL)
        WITH (fillfactor = 50, toast_tuple_target = 8160);
    ALTER TABLE conts ALTER COLUMN data SET STORAGE MAIN;
    CREATE TABLE programs (hash text COLLATE "C" PRIMARY KEY, data bytea NOT NULL);
    CREATE TABLE names (name text COLLATE "C" PRIMARY KEY, hash text COLLATE "C" NOT NULL,
                        updated double precision NOT NULL);
    CREATE TABLE inbox (task text COLLATE "C", seq bigint, data bytea NOT NULL,
                        PRIMARY KEY (task, seq));
    CREATE TABLE timers (due double precision, task text COLLATE "C", request bigint,
                         data bytea NOT NULL, PRIMARY KEY (due, task, request));
    CREATE TABLE log (task text COLLATE "C", seq bigint, data bytea NOT NULL,
                      PRIMARY KEY (task, seq));
    CREATE TABLE output (task text COLLATE "C", seq bigint, text text NOT NULL,
                         PRIMARY KEY (task, seq));
    CREATE TABLE workers (id text COLLATE "C" PRIMARY KEY, data bytea NOT NULL,
                          seen double precision NOT NULL);
    INSERT INTO meta VALUES ('version', '0');
    """,
    """
    CREATE TABLE outbox (task text COLLATE "C", request bigint,
                         not_before double precision NOT NULL,
                         lease_until double precision, data bytea NOT NULL,
                         PRIMARY KEY (task, request));
    CREATE INDEX outbox_due ON outbox (not_before);
    CREATE TABLE tokens (digest text COLLATE "C" PRIMARY KEY, data bytea NOT NULL);
    CREATE TABLE callbacks (digest text COLLATE "C" PRIMARY KEY,
                            task text COLLATE "C" NOT NULL, data bytea NOT NULL);
    CREATE INDEX callbacks_task ON callbacks (task);
    """,
    # Rows a worker keeps from its last round are used without reading them again, and
    # checked at commit: every change to a task's row counts up its version.
    """
    ALTER TABLE tasks ADD COLUMN version bigint NOT NULL DEFAULT 0;
    CREATE FUNCTION check_tasks(ids text[], versions bigint[]) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT count(*) FROM (SELECT t.id, t.version FROM tasks t
                                  WHERE t.id = ANY(ids) ORDER BY t.id FOR UPDATE) s
            JOIN unnest(ids, versions) AS v(id, version)
            ON v.id = s.id AND v.version = s.version) <> cardinality(ids) THEN
            RAISE EXCEPTION 'a task changed since this process read it'
                USING ERRCODE = 'serialization_failure';
        END IF;
    END $$;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


# ---------------------------------------------------------------------------------------
# URLs


def parse_url(url: str) -> tuple[str, str, str]:
    """(conninfo to connect with, schema, location without the password) of a store URL."""
    schema = None
    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        kept = []
        for key, value in query:
            if key == "schema":
                schema = value
            else:
                kept.append((key, value))
        url = urlunsplit(parts._replace(query=urlencode(kept)))
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise StoreError(f"not a PostgreSQL URL: {exc}") from None
    options = str(params.get("options") or "")
    found = re.search(r"-c\s*search_path\s*=\s*(\S+)", options)
    if found:
        first = found.group(1).split(",")[0].strip('"')
        if schema is not None and schema != first:
            raise StoreError(f"the URL names two schemas: {schema} and {first}")
        schema = first
    schema = schema or DEFAULT_SCHEMA
    if not _SCHEMA_RE.fullmatch(schema):
        raise StoreError(f"schema name {schema!r}: use lower-case letters, digits and _")
    if not found:
        options += f" -c search_path={schema}"
    if "idle_in_transaction_session_timeout" not in options:
        options += f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
    params["options"] = options.strip()
    params.setdefault("application_name", "flowmetal")
    host = str(params.get("host") or "")
    where = quote(host, safe="") if host.startswith("/") else host
    if params.get("port"):
        where += f":{params['port']}"
    user = f"{quote(str(params['user']), safe='')}@" if params.get("user") else ""
    location = (f"postgresql://{user}{where}/{quote(str(params.get('dbname') or ''))}"
                f"?schema={schema}")
    return make_conninfo("", **params), schema, location


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for these strings."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# ---------------------------------------------------------------------------------------
# Errors


_UNAVAILABLE = (psycopg.OperationalError, pg_errors.ReadOnlySqlTransaction,
                pg_errors.IdleInTransactionSessionTimeout, psycopg.InterfaceError)
_CONFLICT = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected,
             pg_errors.LockNotAvailable)


def _fault(exc: psycopg.Error, location: str) -> StoreError:
    """The store error that stands for a psycopg error."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, _CONFLICT):
        return StoreConflict(f"the store at {location}: {text} (try again)")
    if isinstance(exc, psycopg_pool.PoolClosed):
        return StoreError(f"the store at {location} is closed")
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"the store at {location} is unavailable: {text}")
    return StoreError(f"the store at {location}: {text}")


# ---------------------------------------------------------------------------------------
# One transaction

_ROW = ("id, record, runnable IS TRUE, updated, lease_worker, lease_until, program, name, "
        "parent, root, created, coalesce(log_seq, 0), coalesce(output_seq, 0), version")
# What a write to a task's row returns: its new version and what the database decides.
_RETURNING = ("RETURNING {t}.id, {t}.version, {t}.runnable IS TRUE, coalesce({t}.log_seq, 0), "
              "coalesce({t}.output_seq, 0)")
_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_CHECK = "SELECT check_tasks(%b::text[], %b::int8[])"
# Each row comes with the version this transaction saw it at (NULL: none, or it read
# it locked): a row another transaction changed since (or deleted) makes the new
# version other than one more, and fails the transaction at once (``check_tasks`` of
# the expected version raises), before anything of it is committed.
_TASKS_UPSERT_CTES = """
WITH v AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::text[], %b::float8[], %b::float8[], %b::text[], %b::float8[],
    %b::text[], %b::float8[], %b::bool[], %b::int8[], %b::int8[], %b::bytea[],
    %b::int8[]) AS v(id, status, program, name, parent, root, created, updated,
    lease_worker, lease_until, waiting_on, waiting_until, runnable, log_seq, output_seq,
    record, expect)),
u AS (
INSERT INTO tasks AS t (id, status, program, name, parent, root, created, updated,
    lease_worker, lease_until, waiting_on, waiting_until, runnable, log_seq, output_seq,
    record)
SELECT id, status, program, name, parent, root, created, updated, lease_worker,
    lease_until, waiting_on, waiting_until, runnable, log_seq, output_seq, record FROM v
ON CONFLICT (id) DO UPDATE SET status = excluded.status, program = excluded.program,
    name = excluded.name, parent = excluded.parent, root = excluded.root,
    created = excluded.created, updated = excluded.updated,
    lease_worker = excluded.lease_worker, lease_until = excluded.lease_until,
    waiting_on = excluded.waiting_on, waiting_until = excluded.waiting_until,
    runnable = coalesce(excluded.runnable, t.runnable),
    log_seq = coalesce(excluded.log_seq, t.log_seq),
    output_seq = coalesce(excluded.output_seq, t.output_seq), record = excluded.record,
    version = t.version + 1
""" + _RETURNING.format(t="t") + ")"
_TASKS_UPSERT_END = """
SELECT u.*, (CASE WHEN u.version <> v.expect + 1 THEN
    check_tasks(ARRAY[u.id], ARRAY[v.expect]) END) IS NULL
FROM u JOIN v ON v.id = u.id
"""
_TASKS_UPSERT = _TASKS_UPSERT_CTES + _TASKS_UPSERT_END
_CONTS_PUT = ("INSERT INTO conts (id, data) SELECT * FROM unnest(%b::text[], %b::bytea[]) "
              "ON CONFLICT (id) DO UPDATE SET data = excluded.data")
_LOG_PUT = "INSERT INTO log (task, seq, data) SELECT * FROM unnest(%b::text[], %b::int8[], " \
    "%b::bytea[])"
_OUTPUT_PUT = "INSERT INTO output (task, seq, text) SELECT * FROM unnest(%b::text[], " \
    "%b::int8[], %b::text[])"
# Statements sent through libpq right after the upsert go in it, as more of its CTEs:
# one statement for a step's record, continuation and journals.
_JOINS_UPSERT = frozenset({_CONTS_PUT, _LOG_PUT, _OUTPUT_PUT})
_joined: dict[tuple[str, ...], str] = {}


def _join_upsert(out: list[tuple[str, Any, bool]]) -> list[tuple[str, Any, bool]]:
    """``out`` with the writes that follow the tasks upsert made part of it."""
    n = 1
    while n < len(out) and out[n][0] in _JOINS_UPSERT:
        n += 1
    if n == 1:
        return out
    key = tuple(q for q, _, _ in out[1:n])
    query = _joined.get(key)
    if query is None:
        query = _joined[key] = (_TASKS_UPSERT_CTES + "".join(
            f", w{i} AS ({q})" for i, q in enumerate(key)) + _TASKS_UPSERT_END)
    params = [*out[0][1]]
    for _, p, _ in out[1:n]:
        params += p
    return [(query, params, True), *out[n:]]
_KEYS_UPSERT = """
INSERT INTO task_keys AS k (id, program, name, parent, root, created)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
    %b::float8[])
ON CONFLICT (id) DO UPDATE SET program = excluded.program, name = excluded.name,
    parent = excluded.parent, root = excluded.root, created = excluded.created
WHERE (k.program, k.name, k.parent, k.root, k.created) IS DISTINCT FROM
    (excluded.program, excluded.name, excluded.parent, excluded.root, excluded.created)
"""
_TASKS_MARKS = """
UPDATE tasks SET runnable = coalesce(v.r, tasks.runnable),
    log_seq = coalesce(v.l, tasks.log_seq), output_seq = coalesce(v.o, tasks.output_seq),
    version = tasks.version + 1
FROM unnest(%b::text[], %b::bool[], %b::int8[], %b::int8[]) AS v(id, r, l, o)
WHERE tasks.id = v.id AND (tasks.runnable IS DISTINCT FROM v.r AND v.r IS NOT NULL
    OR v.l IS NOT NULL OR v.o IS NOT NULL)
""" + _RETURNING.format(t="tasks")
_CLAIM = (f"SELECT {_ROW} FROM tasks WHERE runnable AND (lease_until IS NULL OR "
          "lease_until <= %s OR lease_worker = %s) AND NOT (id = ANY(%b::text[])) "
          "ORDER BY updated, id LIMIT %s")
_DUE = ("SELECT due, task, request, data FROM timers WHERE due <= %s "
        "ORDER BY due, task, request LIMIT %s")
# The same two, asked ahead (see ``PgTables``), with the transaction's clock for ``now``.
_NOW = "extract(epoch FROM now())::float8"
_CLAIM_AHEAD = (f"SELECT {_ROW} FROM tasks WHERE runnable AND (lease_until IS NULL OR "
                f"lease_until <= {_NOW} OR lease_worker = %s) ORDER BY updated, id LIMIT %s "
                "FOR UPDATE SKIP LOCKED")
_DUE_AHEAD = (f"SELECT due, task, request, data FROM timers WHERE due <= {_NOW} "
              "ORDER BY due, task, request LIMIT %s FOR UPDATE SKIP LOCKED")
# The same without locks, asked by a transaction begun ahead (see ``PgTables``).
_CLAIM_PEEK = (f"SELECT {_ROW} FROM tasks WHERE runnable AND (lease_until IS NULL OR "
               f"lease_until <= {_NOW} OR lease_worker = %s::text) ORDER BY updated, id "
               "LIMIT %s::int8")
_DUE_PEEK = (f"SELECT due, task, request, data FROM timers WHERE due <= {_NOW} "
             "ORDER BY due, task, request LIMIT %s::int8")
# The three in one statement (for ``PgTables._raw``): kind 0 is the clock (in updated),
# 1 a due timer (task in id, data in record, due in updated, request in log_seq), 2 a
# claimable task's row.
_PEEK = (f"(SELECT 0::int8, NULL::text, NULL::bytea, NULL::bool, {_NOW}, NULL::text, "
         "NULL::float8, NULL::text, NULL::text, NULL::text, NULL::text, NULL::float8, "
         "NULL::int8, NULL::int8, NULL::int8) UNION ALL "
         "(SELECT 1, task, data, NULL, due, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
         f"request, NULL, NULL FROM timers WHERE due <= {_NOW} "
         "ORDER BY due, task, request LIMIT %s::int8) UNION ALL "
         f"(SELECT 2, {_ROW} FROM tasks WHERE runnable AND (lease_until IS NULL OR "
         f"lease_until <= {_NOW} OR lease_worker = %s::text) ORDER BY updated, id "
         "LIMIT %s::int8)")
# A transaction begun ahead runs its prepared statements with their generic plans: the
# server would otherwise plan the peek and the step's upsert again at each execution
# (custom plans looked cheaper to it), which took 40 and 30 us.  (Its statements look
# tasks up by id, not by a LIKE prefix, whose generic plan could not use an index.)
_GENERIC_PLANS_CALL = "set_config('plan_cache_mode', 'force_generic_plan', true)"
_AHEAD_MAX = 10_000  # no larger claim or timer query is asked ahead
_TIMERS_AHEAD = 64  # the fewest due timers asked ahead
AHEAD_SECONDS = 0.25  # a transaction begun ahead is used this long, then rolled back
_KEEP_MAX = 10_000  # rows kept from a transaction for the next (more: none kept)

_TimerKey = tuple[float, str, int]  # (due, task, request) of a timer
_Keys = tuple[str, str, "str | None", str, float]  # program, name, parent, root, created
# record, runnable, updated, lease worker, lease until, keys, version (None: not known)
_Row = tuple[bytes, bool, float, "str | None", "float | None", _Keys, "int | None"]


# ---------------------------------------------------------------------------------------
# A transaction's last flush (its writes, COMMIT and the next transaction's start) sent
# straight through libpq: psycopg's execute costs ~25 us of Python a statement in pipeline
# mode (it talks to the socket at each one, and adapts each array parameter), which was
# most of a worker's round.  Statements are prepared once per connection under names of
# their own; parameters and results are in binary, by the types the SQL casts them to.

_I4 = struct.Struct("!i")
_F8 = struct.Struct("!d")
_I8 = struct.Struct("!q")
_ARRAY_HEAD = struct.Struct("!iiIii")


def _encode_array(oid: int, encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def encode_array(values: Any) -> bytes:
        if not values:
            return struct.pack("!iiI", 0, 0, oid)
        parts = []
        nulls = 0
        for value in values:
            if value is None:
                parts.append(b"\xff\xff\xff\xff")
                nulls = 1
            else:
                data = encode(value)
                parts.append(_I4.pack(len(data)) + data)
        return _ARRAY_HEAD.pack(1, nulls, oid, len(values), 1) + b"".join(parts)
    return encode_array


def _encode_bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


# type -> (oid, encoder)
_RAW_TYPES: dict[str, tuple[int, Callable[[Any], bytes]]] = {
    "text": (25, str.encode), "float8": (701, _F8.pack), "int8": (20, _I8.pack),
    "bool": (16, _encode_bool), "bytea": (17, bytes),
}
for _name, (_oid, _enc) in list(_RAW_TYPES.items()):
    _RAW_TYPES[_name + "[]"] = ({25: 1009, 701: 1022, 20: 1016, 16: 1000, 17: 1001}[_oid],
                                _encode_array(_oid, _enc))
_RAW_COMMANDS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT"})
_PLACEHOLDER = re.compile(r"%[sb](?:::([a-z0-9]+(?:\[\])?))?")
_RawStatement = tuple[bytes, list[int], list[Callable[[Any], bytes]], list[int]]
_raw_statements: dict[str, _RawStatement | None] = {}
_UNNEST = re.compile(r"unnest\(((?:\s*%b::[a-z0-9]+\[\],?)+)\)(\s+AS\b)?")
_one_row: dict[str, str] = {}
_FIRST = operator.itemgetter(0)


def _one_row_of(query: str, params: Any) -> tuple[str, Any]:
    """A statement over arrays of one item each, as one over the items: the server
    runs it faster, and the items take less to encode."""
    if "unnest(" not in query:
        return query, params
    all_lists = set(map(type, params)) == {list}  # (the usual case, looked at in C)
    if all_lists:
        if set(map(len, params)) != {1}:
            return query, params
    elif not all(type(p) is not list or len(p) == 1 for p in params):
        return query, params
    text = _one_row.get(query)
    if text is None:
        text = _one_row[query] = _UNNEST.sub(
            lambda m: "(VALUES (" + m.group(1).replace("[]", "") + "))" + (
                m.group(2) or " AS one"), query)
    if all_lists:
        return text, list(map(_FIRST, params))
    return text, [p[0] if type(p) is list else p for p in params]


def _raw_statement(query: str) -> _RawStatement | None:
    """($n text, parameter oids, encoders, formats) of a statement whose every parameter
    is cast to a type known here; None for any other."""
    if query in _raw_statements:  # (None is kept too: a statement sent the usual way)
        return _raw_statements[query]
    types: list[str] = []

    def number(m: re.Match) -> str:
        types.append(m.group(1) or "?")
        return f"${len(types)}{m.group(0)[2:]}"
    text = _PLACEHOLDER.sub(number, query)
    known = all(t in _RAW_TYPES for t in types) and "%" not in text and \
        query.lstrip(" \n(").split(None, 1)[0].upper() in _RAW_COMMANDS
    out = (text.encode(), [_RAW_TYPES[t][0] for t in types],
           [_RAW_TYPES[t][1] for t in types], [1] * len(types)) if known else None
    _raw_statements[query] = out
    return out


def _decode_f8(data: bytes) -> float:
    return _F8.unpack(data)[0]


# Decoders called without a Python frame where there is one (a result's every field).
_decode_i8 = functools.partial(int.from_bytes, byteorder="big", signed=True)
_T, _B, _F, _I, _L = bytes.decode, bytes, _decode_f8, _decode_i8, b"\x01".__eq__
_ROW_TYPES = (_T, _B, _L, _F, _T, _F, _T, _T, _T, _T, _F, _I, _I, _I)  # of _ROW
_RETURNING_TYPES = (_T, _I, _L, _I, _I)
# connection -> {statement: name}; names are never used twice in a process, so that a
# connection whose statements psycopg deallocated (it does after a rollback) is told so
# at their next use (then they are prepared again), never that a name is taken.
_prepared_names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_statement_numbers = itertools.count()


def _rows_of(result: Any, types: tuple) -> list[tuple]:
    get = result.get_value
    columns = tuple(enumerate(types))
    return [tuple([None if (v := get(r, c)) is None else decode(v) for c, decode in columns])
            for r in range(result.ntuples)]


def _peek_rows(result: Any) -> tuple[float, list[tuple], list[tuple]]:
    """The clock, the due timers ``(due, task, request, data)`` and the claimable rows
    (``_ROW``) of a ``_PEEK`` result, each row's fields decoded only as its kind needs
    (its first field: 0 the clock, 1 a timer, 2 a task)."""
    get = result.get_value
    clock, due, claimable = None, [], []
    for r in range(result.ntuples):
        kind = _decode_i8(get(r, 0))
        if kind == 2:
            claimable.append(tuple([None if (v := get(r, c)) is None else decode(v)
                                    for c, decode in _ROW_COLUMNS]))
        elif kind == 1:
            due.append((_decode_f8(get(r, 4)), get(r, 1).decode(), _decode_i8(get(r, 12)),
                        bytes(get(r, 2))))
        else:
            clock = _decode_f8(get(r, 4))
    return clock, due, claimable


_ROW_COLUMNS = tuple(enumerate(_ROW_TYPES, 1))  # (a row of a _PEEK result, after its kind)


_FATAL_ERROR, _PIPELINE_SYNC = pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.PIPELINE_SYNC
_STATEMENT_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


def _exchange(pgconn: Any, count: int) -> Any:
    """Generator: flush what was sent, then the results of ``count`` statements and of
    the Sync after them (each a list of results)."""
    yield from generators.send(pgconn)
    out = []
    for _ in range(count + 1):
        out.append((yield from generators.fetch_many(pgconn)))
    return out


def _peek(timers: int, worker: str, limit: int) -> str:
    """The clock, due timers and claim query for a transaction begun ahead, with its
    arguments in the text (so that its plan is made once), and setting the transaction
    to run its prepared statements by their generic plans."""
    query = _peeks.get((timers, worker, limit))
    if query is None:
        if len(_peeks) > 100:
            _peeks.clear()
        literal = "'" + worker.replace("'", "''") + "'"
        query = _peeks[(timers, worker, limit)] = _PEEK.replace(
            "NULL::text, NULL::text, NULL::text, NULL::float8",
            f"{_GENERIC_PLANS_CALL}, NULL::text, NULL::text, NULL::float8", 1).replace(
            "LIMIT %s::int8", f"LIMIT {int(timers)}", 1).replace(
            "lease_worker = %s::text", f"lease_worker = {literal}").replace(
            "LIMIT %s::int8", f"LIMIT {int(limit)}")
    return query


_peeks: dict[tuple[int, str, int], str] = {}


class _Ahead:
    """A write transaction begun ahead (see ``PgTables``): the cursors of its clock and
    of its claim and due-timers queries, and (set once its BEGIN came back) where."""

    __slots__ = ("clock", "claim", "timers", "conn", "pipeline", "context", "at", "thread")

    def __init__(self, clock: psycopg.Cursor, claim: tuple[psycopg.Cursor, str, int],
                 timers: tuple[psycopg.Cursor, int] | None):
        self.clock, self.claim, self.timers = clock, claim, timers
        self.conn: Any = None
        self.pipeline: Any = None
        self.context: Any = None
        self.at = 0.0
        self.thread = 0


class PgTables:
    """One transaction on a PostgreSQL store (``tables.Tables``).

    Rows read are kept for the transaction (in a write transaction they are locked, so
    they cannot change); writes wait in the transaction until a read needs them or it
    commits.  Do not use it from two threads, nor after its ``with`` block.

    A worker's round asks for the due timers and the claimable tasks after it has
    committed its steps.  So that these do not cost a round trip each, a write
    transaction sends both queries ahead, with its first read, as the store's last
    round asked them (same worker and claim limit, twice as many due timers as it found
    but at least ``_TIMERS_AHEAD``, ``now`` the transaction's clock); when asked, their
    rows are merged with what the transaction changed meanwhile, or, if that cannot be
    exact (other arguments, too few rows left), asked again.

    A round that claimed tasks begins the next transaction ahead, in the round trip of
    its COMMIT: BEGIN, the clock and the two queries, without locks (``_Ahead``).  The
    next write transaction of that thread, if it comes within ``AHEAD_SECONDS``, is
    that one (``optimistic``): it takes the task rows the last transaction kept (those
    it read or wrote, with their versions) instead of reading them, and the rows the
    claim query found; before its first write it locks them and checks that their
    versions are still those (``check_tasks``, which fails the transaction otherwise,
    as a serialization failure: the engine runs it again the ordinary way).  So a
    worker's round is one round trip.
    """

    needs_columns = True
    # Called once the commit is sent through libpq, before its answer is awaited (set
    # by a worker's round: it runs the next slices meanwhile).  Whatever it raises is
    # raised after the answer has come back.
    on_sent: Callable[[], None] | None = None

    def __init__(self, store: PostgresStore, conn: psycopg.Connection, write: bool,
                 ahead: _Ahead | None = None):
        self._store = store
        self._conn = conn
        self._write = write
        self._read_cur_: psycopg.Cursor | None = None  # made when first used
        self._write_cur_: psycopg.Cursor | None = None
        self._now: float | None = None
        # what was read: task id -> (record, runnable, updated, lease worker, lease until,
        # (program, name, parent, root, created), version)
        self._rows: dict[str, _Row] = {}
        self._absent: set[str] = set()        # tasks read and found missing
        self._seqs: dict[str, list[int]] = {}  # task -> [last log seq, last output seq]
        self._seqs_dirty: set[str] = set()
        self._conts: dict[str, bytes | None] = {}
        # rows used without a lock, by version, until ``_verify`` sends their check
        self._unverified: dict[str, int] = {}
        self._out: list[tuple[str, Any, bool]] = []  # statements not sent yet
        self._returning: list[Any] = []  # writes to tasks: their versions (cursors, rows)
        self._commit_cur: psycopg.Cursor | None = None
        self._committed_raw = False  # the COMMIT sent through libpq came back done
        self._claimed = False  # a worker's claim found tasks: it will be back soon
        self._next: _Ahead | None = None  # the transaction begun after this one
        # what waits to be written (None: delete)
        self._p_tasks: dict[str, tuple[bytes, TaskColumns]] = {}
        self._p_runnable: dict[str, bool] = {}
        self._p_conts: dict[str, bytes | None] = {}
        self._p_programs: dict[str, bytes] = {}
        self._p_names: dict[str, str] = {}
        self._p_inbox: dict[tuple[str, int], bytes | None] = {}
        self._p_timers: dict[_TimerKey, bytes | None] = {}
        self._p_log: list[tuple[str, int, bytes]] = []
        self._p_output: list[tuple[str, int, str]] = []
        self._p_workers: dict[str, bytes | None] = {}
        self._wake = False
        self._failed: StoreError | None = None
        self._sent_tasks = self._sent_timers = False  # flushed before a claim, timers_due
        self.optimistic = ahead is not None
        if ahead is not None:
            self._clock_cur = ahead.clock
            self._ahead_claim = ahead.claim
            self._ahead_timers = ahead.timers
            return
        self._write_cur.execute(_BEGIN_WRITE if write else _BEGIN_READ)
        self._clock_cur = conn.cursor(binary=True)
        self._clock_cur.execute("SELECT " + _NOW)
        # Asked ahead, with the first read, as the last round of this store asked them.
        self._ahead_claim: tuple[psycopg.Cursor, str, int] | None = None
        self._ahead_timers: tuple[psycopg.Cursor, int] | None = None
        if write and store._hint_timers is not None:
            cur = conn.cursor(binary=True)
            cur.execute(_DUE_AHEAD, (store._hint_timers,))
            self._ahead_timers = (cur, store._hint_timers)
        if write and store._hint_claim is not None:
            worker, limit = store._hint_claim
            cur = conn.cursor(binary=True)
            cur.execute(_CLAIM_AHEAD, (worker, limit))
            self._ahead_claim = (cur, worker, limit)

    # plumbing --------------------------------------------------------------------------

    @property
    def _read_cur(self) -> psycopg.Cursor:
        cur = self._read_cur_
        if cur is None:
            cur = self._read_cur_ = self._conn.cursor(binary=True)
        return cur

    @property
    def _write_cur(self) -> psycopg.Cursor:
        cur = self._write_cur_
        if cur is None:
            cur = self._write_cur_ = self._conn.cursor()
        return cur

    def _fail(self, exc: psycopg.Error) -> StoreError:
        """The transaction's fault: the first error it met (later statements of a failed
        transaction only say that the pipeline was aborted)."""
        if self._failed is None:
            self._failed = _fault(exc, self._store.location)
        return self._failed

    def _query(self, query: str, params: Any = None) -> list[tuple]:
        """Run a query and fetch its rows (sending the writes queued before it)."""
        if self._failed is not None:
            raise self._failed
        if self._out:
            self._push()
        cur = self._read_cur
        try:
            cur.execute(query, params)
            return cur.fetchall()
        except psycopg.Error as exc:
            raise self._fail(exc) from None

    def _fetch(self, cur: Any) -> list[tuple]:
        """The rows of a query sent earlier on ``cur`` (or the rows themselves, read
        with the last commit)."""
        if self._failed is not None:
            raise self._failed
        if isinstance(cur, list):
            return cur
        try:
            return cur.fetchall()
        except psycopg.Error as exc:
            raise self._fail(exc) from None

    def _send(self, query: str, params: Any = None, returning: bool = False) -> None:
        """Queue a statement whose result is not needed now (with ``returning``, the
        rows it returns are read after the commit), after the check of the rows used
        unchecked.  It goes out with the next read, or at commit."""
        self._need_write()
        if self._unverified:
            self._verify()
        if self._failed is not None:
            raise self._failed
        self._out.append((query, params, returning))

    def _push(self) -> None:
        """Send the queued statements through psycopg (before a read)."""
        out, self._out = self._out, []
        try:
            for query, params, returning in out:
                cur = self._write_cur
                if returning:
                    cur = self._conn.cursor(binary=True)
                    self._returning.append(cur)
                cur.execute(query, params)
        except psycopg.Error as exc:
            raise self._fail(exc) from None

    def _need_write(self) -> None:
        if not self._write:
            raise StoreError("a read transaction cannot write")

    def _lock(self) -> str:
        return " FOR UPDATE" if self._write else ""

    def _take_rows(self, rows: Iterable[tuple], locked: bool = True) -> dict[str, bytes]:
        """Note rows read (``locked``: with FOR UPDATE); a row this transaction uses
        unchecked that has changed fails it (``StoreConflict``)."""
        out = {}
        unverified = self._unverified
        for (task_id, record, runnable, updated, worker, until, program, name, parent, root,
             created, log_seq, out_seq, version) in rows:
            expected = unverified.get(task_id)
            if expected is not None:
                if expected != version:
                    raise self._changed()
                if locked:
                    del unverified[task_id]
                out[task_id] = self._rows[task_id][0]
                continue
            self._rows[task_id] = (record, runnable, updated, worker, until,
                                   (program, name, parent, root, created), version)
            self._seqs.setdefault(task_id, [log_seq, out_seq])
            if not locked:
                unverified[task_id] = version
            out[task_id] = record
        return out

    def _changed(self) -> StoreError:
        if self._failed is None:
            self._failed = StoreConflict(f"the store at {self._store.location}: a task "
                                         "changed since this process read it (try again)")
        return self._failed

    def _kept(self, task_id: str) -> bytes | None:
        """The task's record as the last transaction left it, used unchecked (an
        optimistic transaction only; None if not kept)."""
        if not self.optimistic:
            return None
        kept = self._store._kept.get(task_id)
        if kept is None:
            return None
        row, seqs = kept
        self._rows[task_id] = row
        self._seqs.setdefault(task_id, list(seqs))
        self._unverified[task_id] = row[6]
        return row[0]

    def _verify(self) -> None:
        """Send the check of the rows used unchecked (before any write)."""
        unverified = self._unverified
        if unverified:
            ids = sorted(unverified)
            versions = [unverified[i] for i in ids]
            unverified.clear()
            self._send(_CHECK, (ids, versions))

    def clock(self) -> float:
        """The database's ``now()`` (the transaction's start), in seconds since the epoch."""
        if self._now is None:
            if self._failed is not None:
                raise self._failed
            if isinstance(self._clock_cur, float):
                self._now = self._clock_cur
                return self._now
            try:
                row = self._clock_cur.fetchone()
            except psycopg.Error as exc:
                raise self._fail(exc) from None
            assert row is not None
            self._now = float(row[0])
        return self._now

    def notify(self) -> None:
        """Wake the store's waiting workers when this transaction commits."""
        self._wake = True

    def flush(self) -> None:
        """Send every write waiting in the transaction."""
        self._flush_tasks()
        self._flush_timers()
        self._flush_rest()

    def _flush_tasks(self) -> None:
        pending, marks = self._p_tasks, self._p_runnable
        dirty = self._seqs_dirty
        if pending or marks or dirty:
            self._sent_tasks = True
        if pending:
            ids = sorted(pending)
            cols = [pending[i][1] for i in ids]
            seqs = [self._seqs.get(i) for i in ids]
            unverified = self._unverified
            expect = [unverified.pop(i, None) for i in ids]  # the upsert checks them
            self._send(_TASKS_UPSERT, returning=True, params=(
                ids, [c.status for c in cols], [c.program for c in cols],
                [c.name for c in cols], [c.parent for c in cols], [c.root for c in cols],
                [float(c.created) for c in cols], [float(c.updated) for c in cols],
                [c.lease_worker for c in cols], [_float(c.lease_until) for c in cols],
                [c.waiting_on for c in cols], [_float(c.waiting_until) for c in cols],
                [marks.get(i) for i in ids], [s[0] if s else None for s in seqs],
                [s[1] if s else None for s in seqs], [pending[i][0] for i in ids], expect))
            # The indexed copy of the keys is written when they are new or changed.
            new_keys = []
            for i, c in zip(ids, cols):
                data = pending[i][0]
                keys = (c.program, c.name, c.parent, c.root, float(c.created))
                row = self._rows.get(i)
                if row is None or row[5] != keys:
                    new_keys.append((i, keys))
                runnable = marks.pop(i, None)
                if runnable is None:
                    runnable = row[1] if row is not None else False
                self._rows[i] = (data, runnable, c.updated, c.lease_worker, c.lease_until, keys,
                                 None)  # the version comes back with the commit
                self._absent.discard(i)
                dirty.discard(i)
            if new_keys:
                self._send(_KEYS_UPSERT, tuple(
                    [i for i, _ in new_keys] if n < 0 else [k[n] for _, k in new_keys]
                    for n in range(-1, 5)))
            pending.clear()
        # A task known to have no row yet keeps its mark until its record is written.
        ids = sorted(i for i in set(marks) | dirty if i not in self._absent)
        if ids:
            seqs = [self._seqs[i] if i in dirty else None for i in ids]
            self._send(_TASKS_MARKS, returning=True, params=(
                ids, [marks.get(i) for i in ids], [s[0] if s else None for s in seqs],
                [s[1] if s else None for s in seqs]))
            for i in ids:
                dirty.discard(i)
                row = self._rows.get(i)
                if row is not None:  # else it may have no row: the mark waits too
                    runnable = marks.pop(i) if i in marks else row[1]
                    self._rows[i] = (row[0], runnable, *row[2:6], None)

    def _flush_timers(self) -> None:
        pending = self._p_timers
        if not pending:
            return
        self._sent_timers = True
        gone = [k for k, v in pending.items() if v is None]
        armed = [(k, v) for k, v in pending.items() if v is not None]
        if gone:
            self._send("DELETE FROM timers USING unnest(%b::float8[], %b::text[], "
                       "%b::int8[]) AS v(due, task, request) WHERE timers.due = v.due AND "
                       "timers.task = v.task AND timers.request = v.request",
                       ([k[0] for k in gone], [k[1] for k in gone], [k[2] for k in gone]))
        if armed:
            self._send("INSERT INTO timers (due, task, request, data) SELECT * FROM "
                       "unnest(%b::float8[], %b::text[], %b::int8[], %b::bytea[]) "
                       "ON CONFLICT (due, task, request) DO UPDATE SET data = excluded.data",
                       ([k[0] for k, _ in armed], [k[1] for k, _ in armed],
                        [k[2] for k, _ in armed], [v for _, v in armed]))
        pending.clear()

    def _flush_rest(self) -> None:
        if self._p_conts:
            gone = [k for k, v in self._p_conts.items() if v is None]
            put = [(k, v) for k, v in self._p_conts.items() if v is not None]
            if gone:
                self._send("DELETE FROM conts WHERE id = ANY(%b::text[])", (gone,))
            if put:
                put.sort()
                self._send(_CONTS_PUT, ([k for k, _ in put], [v for _, v in put]))
            self._conts.update(self._p_conts)
            self._p_conts.clear()
        self._flush_inbox()
        self._flush_journals()
        if self._p_programs:
            items = sorted(self._p_programs.items())
            self._send("INSERT INTO programs (hash, data) SELECT * FROM unnest(%b::text[], "
                       "%b::bytea[]) ON CONFLICT (hash) DO NOTHING",
                       ([k for k, _ in items], [v for _, v in items]))
            self._p_programs.clear()
        if self._p_names:
            items = sorted(self._p_names.items())
            self._send("INSERT INTO names (name, hash, updated) SELECT v.name, v.hash, "
                       "extract(epoch FROM now()) FROM unnest(%b::text[], %b::text[]) AS "
                       "v(name, hash) ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, "
                       "updated = excluded.updated",
                       ([k for k, _ in items], [v for _, v in items]))
            self._p_names.clear()
        self._flush_workers()

    def _flush_inbox(self) -> None:
        pending = self._p_inbox
        if not pending:
            return
        gone = [k for k, v in pending.items() if v is None]
        put = [(k, v) for k, v in pending.items() if v is not None]
        if gone:
            self._send("DELETE FROM inbox USING unnest(%b::text[], %b::int8[]) AS v(task, seq) "
                       "WHERE inbox.task = v.task AND inbox.seq = v.seq",
                       ([k[0] for k in gone], [k[1] for k in gone]))
        if put:
            self._send("INSERT INTO inbox (task, seq, data) SELECT * FROM unnest(%b::text[], "
                       "%b::int8[], %b::bytea[]) ON CONFLICT (task, seq) DO UPDATE SET "
                       "data = excluded.data",
                       ([k[0] for k, _ in put], [k[1] for k, _ in put], [v for _, v in put]))
        pending.clear()

    def _flush_journals(self) -> None:
        if self._p_log:
            log = self._p_log
            self._send(_LOG_PUT, ([r[0] for r in log], [r[1] for r in log],
                                  [r[2] for r in log]))
            self._p_log = []
        if self._p_output:
            out = self._p_output
            self._send(_OUTPUT_PUT, ([r[0] for r in out], [r[1] for r in out],
                                     [r[2] for r in out]))
            self._p_output = []

    def _flush_workers(self) -> None:
        pending = self._p_workers
        if not pending:
            return
        gone = [k for k, v in pending.items() if v is None]
        put = sorted((k, v) for k, v in pending.items() if v is not None)
        if gone:
            self._send("DELETE FROM workers WHERE id = ANY(%b::text[])", (gone,))
        if put:
            self._send("INSERT INTO workers (id, data, seen) SELECT v.id, v.data, "
                       "extract(epoch FROM now()) FROM unnest(%b::text[], %b::bytea[]) AS "
                       "v(id, data) ON CONFLICT (id) DO UPDATE SET data = excluded.data, "
                       "seen = excluded.seen", ([k for k, _ in put], [v for _, v in put]))
        pending.clear()

    def _finish(self) -> None:
        """Send what is left, the wake-up if one is due, and COMMIT; after a worker's
        round that claimed tasks, begin the next transaction too (``_Ahead``)."""
        if self._failed is not None:
            raise self._failed
        if not self._write:
            self._push()
            cur = self._commit_cur = self._conn.cursor()
            cur.execute("COMMIT")
            return
        self.flush()
        if self._wake:
            self._send("SELECT pg_notify(%s::text, '')", (self._store.channel,))
        self._verify()
        store = self._store
        ahead = store._hint_claim if self._claimed else None
        if ahead is not None and self._raw(ahead):  # (else one sync ends it all)
            return
        self._push()
        cur = self._commit_cur = self._conn.cursor()
        try:
            cur.execute("COMMIT")
        except psycopg.Error as exc:
            raise self._fail(exc) from None
        if ahead is not None:
            conn = self._conn
            try:
                self._write_cur.execute(_BEGIN_WRITE)
                clock = conn.cursor(binary=True)
                clock.execute("SELECT " + _NOW)
                timers = None
                if store._hint_timers is not None:
                    timers = (conn.cursor(binary=True), store._hint_timers)
                    timers[0].execute(_DUE_PEEK, (timers[1],))
                worker, limit = ahead
                claim = (conn.cursor(binary=True), worker, limit)
                claim[0].execute(_CLAIM_PEEK, (worker, limit))
            except psycopg.Error as exc:
                raise self._fail(exc) from None
            self._next = _Ahead(clock, claim, timers)

    def _raw(self, ahead: tuple[str, int] | None) -> bool:
        """Send the queued statements, COMMIT and (with ``ahead``, the worker and limit
        of its claim) the next transaction's start straight through libpq, in one round
        trip; False if they cannot go that way (psycopg still has results to read, or a
        statement has a parameter of a type not known here)."""
        conn = self._conn
        pipeline = getattr(conn, "_pipeline", None)
        if pipeline is None or getattr(pipeline, "command_queue", True) or \
                getattr(pipeline, "result_queue", True):
            return False
        store = self._store
        out = self._out
        if out and out[0][0] is _TASKS_UPSERT:
            out = _join_upsert(out)
        items: list[tuple[str, Any, Any]] = [(*_one_row_of(q, p), _RETURNING_TYPES if r else None)
                                            for q, p, r in out]
        items.append(("COMMIT", (), "commit"))
        if ahead is not None:
            items += [(_BEGIN_WRITE, (), None),
                      (_peek(store._hint_timers or 0, *ahead), (), "peek")]
        statements = [_raw_statement(q) for q, _, _ in items]
        if None in statements:
            return False
        self._out = []
        pgconn = conn.pgconn
        names = _prepared_names.get(conn)
        if names is None:
            names = _prepared_names[conn] = {}
        expect: list[Any] = []  # per result: what it is
        preparing: dict[bytes, bytes] = {}
        error: psycopg.Error | None = None
        clock: Any = None
        claim = timers = None
        deferred: BaseException | None = None  # raised by on_sent
        try:
            for (_, params, kind), statement in zip(items, statements):
                assert statement is not None
                text, oids, encoders, formats = statement
                name = names.get(text) or preparing.get(text)
                if name is None:
                    name = preparing[text] = b"fm_%d" % next(_statement_numbers)
                    pgconn.send_prepare(name, text, param_types=oids)
                    expect.append(("prepare", text, name))
                pgconn.send_query_prepared(
                    name, [None if v is None else enc(v) for enc, v in zip(encoders, params)],
                    param_formats=formats, result_format=1)
                expect.append(kind)
            pgconn.pipeline_sync()
            on_sent = self.on_sent
            if on_sent is not None:
                self.on_sent = None
                try:
                    on_sent()
                except BaseException as exc:
                    deferred = exc
            got = conn.wait(_exchange(pgconn, len(expect)))
            for kind, results in zip(expect, got):
                result = results[-1] if results else None
                status = result.status if result is not None else None
                if status == _FATAL_ERROR:
                    if error is None:
                        error = pg_errors.error_from_result(result, encoding="utf-8")
                    continue
                if status not in _STATEMENT_OK:
                    continue  # skipped after an error
                if isinstance(kind, tuple) and kind[0] == "prepare":
                    names[kind[1]] = kind[2]
                elif kind == "commit":
                    self._committed_raw = result.command_status == b"COMMIT"
                elif kind == "peek":
                    clock, due, claimable = _peek_rows(result)
                    if store._hint_timers is not None:
                        timers = (due, store._hint_timers)
                    claim = (claimable, *ahead)
                elif kind is not None:
                    self._returning.append(_rows_of(result, kind))
            sync = got[-1]
            if not sync or sync[-1].status != _PIPELINE_SYNC:
                raise psycopg.OperationalError("the pipeline lost its place")
        except psycopg.Error as exc:
            _prepared_names.pop(conn, None)
            if deferred is not None and not isinstance(deferred, Exception):
                raise deferred from None  # (an interrupt comes first)
            raise self._fail(exc) from None
        if error is not None and deferred is not None and \
                not isinstance(deferred, Exception):
            raise deferred
        if error is not None:
            if isinstance(error, pg_errors.InvalidSqlStatementName):
                # psycopg deallocated every statement (it does after a rollback)
                _prepared_names.pop(conn, None)
                self._failed = StoreConflict(f"the store at {store.location}: {error} "
                                             "(try again)")
            raise self._fail(error)
        if ahead is not None and clock is not None and claim is not None:
            self._next = _Ahead(clock, claim, timers)
        if deferred is not None:
            raise deferred
        return True

    def _commit_ok(self) -> bool:
        """Whether the COMMIT went through (known once its result came back)."""
        if self._committed_raw:
            return True
        cur = self._commit_cur
        result = cur.pgresult if cur is not None else None
        return result is not None and result.command_status == b"COMMIT"

    def _committed(self) -> None:
        """After the commit: keep the task rows this transaction read or wrote, with
        their versions, for the next."""
        if not self._write:
            return
        rows, seqs = self._rows, self._seqs
        for cur in self._returning:
            returned = cur if isinstance(cur, list) else cur.fetchall()
            for task_id, version, runnable, log_seq, out_seq, *_ in returned:
                row = rows.get(task_id)
                if row is not None:
                    rows[task_id] = (row[0], runnable, *row[2:6], version)
                    seqs[task_id] = [log_seq, out_seq]
        kept = {}
        if len(rows) <= _KEEP_MAX:
            for task_id, row in rows.items():
                if row[6] is not None and task_id not in self._seqs_dirty:
                    kept[task_id] = (row, tuple(seqs.get(task_id) or (0, 0)))
        self._store._kept = kept

    # task records and continuations ----------------------------------------------------

    def get_task(self, task_id: str) -> bytes | None:
        """The task's record (in a write transaction, locked until it ends)."""
        pending = self._p_tasks.get(task_id)
        if pending is not None:
            return pending[0]
        row = self._rows.get(task_id)
        if row is not None:
            return row[0]
        kept = self._kept(task_id)
        if kept is not None:
            return kept
        found = self._take_rows(self._query(
            f"SELECT {_ROW} FROM tasks WHERE id = %s{self._lock()}", (task_id,)))
        if task_id not in found:
            self._absent.add(task_id)
            return None
        return found[task_id]

    def get_tasks(self, task_ids: Iterable[str]) -> dict[str, bytes]:
        """The records of those of ``task_ids`` that exist (locked in id order)."""
        out: dict[str, bytes] = {}
        wanted = []
        for task_id in task_ids:
            pending = self._p_tasks.get(task_id)
            row = self._rows.get(task_id)
            if pending is not None:
                out[task_id] = pending[0]
            elif row is not None:
                out[task_id] = row[0]
            elif (kept := self._kept(task_id)) is not None:
                out[task_id] = kept
            else:
                wanted.append(task_id)
        if wanted:
            wanted = sorted(set(wanted))
            found = self._take_rows(self._query(
                f"SELECT {_ROW} FROM tasks WHERE id = ANY(%b::text[]) ORDER BY id"
                f"{self._lock()}", (wanted,)))
            out.update(found)
            self._absent.update(t for t in wanted if t not in found)
        return out

    def put_task(self, task_id: str, data: bytes, columns: TaskColumns) -> None:
        """Write a task record and its columns (at commit, or when a read needs it)."""
        self._need_write()
        self._p_tasks[task_id] = (data, columns)

    @staticmethod
    def _where(where: TaskFilter) -> tuple[str, list[str], list[Any]]:
        """(FROM clause, conditions, parameters) of a listing: the keys that never change
        (program, name, parent, root, created) are indexed in ``task_keys``."""
        clauses: list[str] = []
        params: list[Any] = []
        if where.status:
            clauses.append("t.status = ANY(%b::text[])")
            params.append(list(where.status))
        if where.id_prefix:
            clauses.append("t.id LIKE %s")
            params.append(_like_prefix(where.id_prefix))
        keyed = len(clauses)
        if where.program:
            clauses.append("k.program LIKE %s")
            params.append(_like_prefix(where.program))
        if where.name:
            clauses.append("k.name = %s AND k.name <> ''")
            params.append(where.name)
        if where.parent is not None:
            clauses.append("k.parent = %s")
            params.append(where.parent)
        if where.root is not None:
            clauses.append("k.root = %s")
            params.append(where.root)
        if where.created_after is not None:
            clauses.append("k.created > %s")
            params.append(float(where.created_after))
        if where.created_before is not None:
            clauses.append("k.created < %s")
            params.append(float(where.created_before))
        tables = "tasks t" if len(clauses) == keyed else \
            "tasks t JOIN task_keys k ON k.id = t.id"
        return tables, clauses, params

    def scan_tasks(self, where: TaskFilter, after: str = "", limit: int = 100,
                   descending: bool = False) -> list[bytes]:
        """Up to ``limit`` matching records in id order after ``after`` (with
        ``descending``, before it, newest first); keyset paging, no OFFSET."""
        self._flush_tasks()
        tables, clauses, params = self._where(where)
        if after:
            clauses.append("t.id < %s" if descending else "t.id > %s")
            params.append(after)
        query = f"SELECT t.record FROM {tables}"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += f" ORDER BY t.id {'DESC' if descending else 'ASC'} LIMIT %s"
        params.append(max(0, limit))
        return [row[0] for row in self._query(query, params)]

    def count_tasks(self, where: TaskFilter) -> dict[str, int]:
        """How many tasks match ``where``, by status."""
        self._flush_tasks()
        tables, clauses, params = self._where(where)
        query = f"SELECT t.status, count(*) FROM {tables}"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        return dict(self._query(query + " GROUP BY t.status", params))

    def get_cont(self, task_id: str) -> bytes | None:
        """The task's encoded continuation."""
        if task_id in self._p_conts:
            return self._p_conts[task_id]
        if task_id in self._conts:
            return self._conts[task_id]
        rows = self._query("SELECT data FROM conts WHERE id = %s", (task_id,))
        data = rows[0][0] if rows else None
        self._conts[task_id] = data
        return data

    def put_cont(self, task_id: str, data: bytes) -> None:
        """Replace the task's encoded continuation."""
        self._need_write()
        self._p_conts[task_id] = data

    def delete_task(self, task_id: str) -> None:
        """Remove the task's record (after ``delete_task_data``)."""
        self.flush()  # the writes queued for it go first
        for table in ("task_keys", "tasks"):
            self._send(f"DELETE FROM {table} WHERE id = %s", (task_id,))
        self._rows.pop(task_id, None)
        self._seqs.pop(task_id, None)
        self._absent.add(task_id)

    def delete_task_data(self, task_id: str) -> None:
        """Remove the task's continuation, inbox, log, output and runnable mark (the
        record stays); its journals count from 1 again."""
        self._need_write()
        self._p_conts[task_id] = None
        self._p_runnable[task_id] = False
        for key in [k for k in self._p_inbox if k[0] == task_id]:
            del self._p_inbox[key]
        self._p_log = [r for r in self._p_log if r[0] != task_id]
        self._p_output = [r for r in self._p_output if r[0] != task_id]
        for table in ("inbox", "log", "output", "outbox", "callbacks"):
            self._send(f"DELETE FROM {table} WHERE task = %s", (task_id,))
        self._seqs[task_id] = [0, 0]
        self._seqs_dirty.add(task_id)

    # programs --------------------------------------------------------------------------

    def get_program(self, digest: str) -> bytes | None:
        """A program record by hash."""
        if digest in self._p_programs:
            return self._p_programs[digest]
        rows = self._query("SELECT data FROM programs WHERE hash = %s", (digest,))
        return rows[0][0] if rows else None

    def all_programs(self) -> Iterator[tuple[str, bytes]]:
        """Every stored program record: (hash, record)."""
        rows = self._query("SELECT hash, data FROM programs ORDER BY hash")
        stored = {h for h, _ in rows}
        yield from ((h, bytes(d)) for h, d in rows)
        yield from ((h, d) for h, d in self._p_programs.items() if h not in stored)

    def all_names(self) -> Iterator[tuple[str, str]]:
        """Every deployed name: (name, program hash)."""
        yield from self._query("SELECT name, hash FROM names ORDER BY name")

    def put_program(self, digest: str, data: bytes) -> None:
        """Store a program record; a hash already stored is left as it is."""
        self._need_write()
        self._p_programs.setdefault(digest, data)

    def get_name(self, name: str) -> str | None:
        """The program hash a name stands for, or None."""
        if name in self._p_names:
            return self._p_names[name]
        rows = self._query("SELECT hash FROM names WHERE name = %s", (name,))
        return rows[0][0] if rows else None

    def put_name(self, name: str, digest: str) -> None:
        """Make ``name`` stand for the program ``digest``."""
        self._need_write()
        self._p_names[name] = digest

    # inboxes ---------------------------------------------------------------------------

    def inbox_put(self, task_id: str, seq: int, data: bytes) -> None:
        """Queue message number ``seq`` for the task."""
        self._need_write()
        self._p_inbox[(task_id, seq)] = data

    def inbox_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """Queued messages numbered above ``after``, oldest first."""
        items = dict(self._query("SELECT seq, data FROM inbox WHERE task = %s AND seq > %s "
                                 "ORDER BY seq", (task_id, after)))
        for (task, seq), data in self._p_inbox.items():
            if task == task_id and seq > after:
                if data is None:
                    items.pop(seq, None)
                else:
                    items[seq] = data
        return iter(sorted(items.items()))

    def inbox_delete(self, task_id: str, seq: int) -> None:
        """Remove a consumed message."""
        self._need_write()
        self._p_inbox[(task_id, seq)] = None

    # timers ----------------------------------------------------------------------------

    def timer_add(self, due: float, task_id: str, request: int, data: bytes) -> None:
        """Arm a timer for the task's request (0 for the task's deadline)."""
        self._need_write()
        self._p_timers[(float(due), task_id, request)] = data
        self._wake = True

    def timers_due(self, now: float, limit: int) -> list[tuple[float, str, int, bytes]]:
        """Up to ``limit`` timers due at ``now``, earliest first; in a write transaction
        they are locked, and timers another transaction holds are skipped."""
        limit = max(0, limit)
        ahead, self._ahead_timers = self._ahead_timers, None
        rows = self._fetch(ahead[0]) if ahead is not None else []
        if self.optimistic and rows:
            ahead = None  # asked without locks: used only when no timer was due
        out = None
        if ahead is not None and not self._sent_timers and now == self.clock():
            pending = self._p_timers
            got = {(due, task, request): data for due, task, request, data in rows
                   if (due, task, request) not in pending}
            # (any timer not asked ahead sorts after those that were)
            if len(rows) < ahead[1] or len(got) >= limit:  # nothing left unseen
                for key, data in pending.items():
                    if data is not None and key[0] <= now:
                        got[key] = data
                out = [(*key, data) for key, data in sorted(got.items())[:limit]]
        if out is None:
            self._flush_timers()
            lock = " FOR UPDATE SKIP LOCKED" if self._write else ""
            out = [(due, task, request, data) for due, task, request, data
                   in self._query(_DUE + lock, (float(now), limit))]
        if self._write:
            # Asked ahead: twice as many as were due now, so that a small LIMIT keeps
            # the query an index scan (with a large one the server sorted the rows of
            # a bitmap scan, which took 12 us of each round even with none due).
            self._store._hint_timers = min(limit, max(_TIMERS_AHEAD, 2 * len(out))) \
                if limit <= _AHEAD_MAX else None
        return out

    def timer_delete(self, due: float, task_id: str, request: int) -> None:
        """Disarm a timer (nothing if it is not armed)."""
        self._need_write()
        self._p_timers[(float(due), task_id, request)] = None

    def next_timer(self) -> float | None:
        """When the earliest timer is due, or None."""
        self._flush_timers()
        rows = self._query("SELECT min(due) FROM timers")
        return rows[0][0] if rows else None

    # the outbox ------------------------------------------------------------------------

    def outbox_put(self, task_id: str, request: int, data: bytes, not_before: float,
                   lease_until: float | None) -> None:
        """Write the outbox entry of the task's request (sent at once, in the pipeline); the
        store's connectors are woken when the transaction commits."""
        self._wake = True
        self._send("INSERT INTO outbox (task, request, not_before, lease_until, data) "
                   "VALUES (%s, %s, %s, %s, %b) ON CONFLICT (task, request) DO UPDATE SET "
                   "not_before = excluded.not_before, lease_until = excluded.lease_until, "
                   "data = excluded.data",
                   (task_id, request, float(not_before), _float(lease_until), data))

    def outbox_get(self, task_id: str, request: int) -> bytes | None:
        """The outbox entry of the task's request (locked in a write transaction)."""
        rows = self._query(f"SELECT data FROM outbox WHERE task = %s AND request = %s"
                           f"{self._lock()}", (task_id, request))
        return bytes(rows[0][0]) if rows else None

    def outbox_delete(self, task_id: str, request: int) -> None:
        """Remove an outbox entry."""
        self._send("DELETE FROM outbox WHERE task = %s AND request = %s", (task_id, request))

    def outbox_due(self, now: float, limit: int) -> list[tuple[str, int, bytes]]:
        """Claimable entries, oldest first; locked ones are skipped."""
        lock = " FOR UPDATE SKIP LOCKED" if self._write else ""
        rows = self._query("SELECT task, request, data FROM outbox WHERE not_before <= %s "
                           "AND (lease_until IS NULL OR lease_until <= %s) "
                           f"ORDER BY not_before, task, request LIMIT %s{lock}",
                           (float(now), float(now), limit))
        return [(task, request, bytes(data)) for task, request, data in rows]

    def outbox_items(self, task_id: str | None = None) -> Iterator[tuple[str, int, bytes]]:
        """Every outbox entry, or those of one task."""
        where, params = ("WHERE task = %s ", (task_id,)) if task_id is not None else ("", ())
        rows = self._query(f"SELECT task, request, data FROM outbox {where}"
                           "ORDER BY task, request", params)
        for task, request, data in rows:
            yield task, request, bytes(data)

    # settings, access tokens and callbacks ---------------------------------------------

    def setting_get(self, key: str, lock: bool = False) -> str | None:
        """A store-wide setting; with ``lock``, held until the transaction ends (an
        advisory lock on the key: it holds for a key not yet stored, too)."""
        if lock:
            self._query("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        ("setting:" + key,))
        rows = self._query("SELECT value FROM meta WHERE key = %s", ("setting:" + key,))
        return rows[0][0] if rows else None

    def setting_put(self, key: str, value: str | None) -> None:
        """Set or remove a store-wide setting."""
        if value is None:
            self._send("DELETE FROM meta WHERE key = %s", ("setting:" + key,))
        else:
            self._send("INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                       "DO UPDATE SET value = excluded.value", ("setting:" + key, value))

    def token_put(self, digest: str, data: bytes) -> None:
        """Write an access token record."""
        self._send("INSERT INTO tokens (digest, data) VALUES (%s, %b) ON CONFLICT (digest) "
                   "DO UPDATE SET data = excluded.data", (digest, data))

    def token_get(self, digest: str) -> bytes | None:
        """An access token record."""
        rows = self._query("SELECT data FROM tokens WHERE digest = %s", (digest,))
        return bytes(rows[0][0]) if rows else None

    def token_items(self) -> Iterator[tuple[str, bytes]]:
        """Every access token record."""
        for digest, data in self._query("SELECT digest, data FROM tokens ORDER BY digest"):
            yield digest, bytes(data)

    def callback_put(self, digest: str, task_id: str, data: bytes) -> None:
        """Write a callback record."""
        self._send("INSERT INTO callbacks (digest, task, data) VALUES (%s, %s, %b) "
                   "ON CONFLICT (digest) DO UPDATE SET data = excluded.data",
                   (digest, task_id, data))

    def callback_get(self, digest: str) -> bytes | None:
        """A callback record (locked in a write transaction)."""
        rows = self._query(f"SELECT data FROM callbacks WHERE digest = %s{self._lock()}",
                           (digest,))
        return bytes(rows[0][0]) if rows else None

    def callback_delete(self, digest: str) -> None:
        """Remove a callback."""
        self._send("DELETE FROM callbacks WHERE digest = %s", (digest,))

    def callbacks_of(self, task_id: str) -> list[tuple[str, bytes]]:
        """The task's callbacks."""
        return [(d, bytes(data)) for d, data in self._query(
            "SELECT digest, data FROM callbacks WHERE task = %s ORDER BY digest", (task_id,))]

    # journals --------------------------------------------------------------------------

    def _journal_seqs(self, task_id: str) -> list[int]:
        """The task's [last log seq, last output seq], reading (and locking) its row
        if this transaction has not read it."""
        seqs = self._seqs.get(task_id)
        if seqs is not None:
            return seqs
        if task_id in self._absent:  # a new task (ids are random: no one else makes it)
            seqs = self._seqs[task_id] = [0, 0]
            return seqs
        self._take_rows(self._query(
            f"SELECT {_ROW} FROM tasks WHERE id = %s{self._lock()}", (task_id,)))
        seqs = self._seqs.get(task_id)
        if seqs is not None:
            return seqs
        rows = self._query("SELECT (SELECT max(seq) FROM log WHERE task = %s), "
                           "(SELECT max(seq) FROM output WHERE task = %s)",
                           (task_id, task_id))
        seqs = self._seqs[task_id] = [rows[0][0] or 0, rows[0][1] or 0]
        return seqs

    def log_append(self, task_id: str, data: bytes) -> int:
        """Append an event record to the task's log; its sequence number."""
        self._need_write()
        seqs = self._journal_seqs(task_id)
        seqs[0] += 1
        self._seqs_dirty.add(task_id)
        self._p_log.append((task_id, seqs[0], data))
        return seqs[0]

    def log_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """The task's events numbered above ``after``, in order."""
        rows = self._query("SELECT seq, data FROM log WHERE task = %s AND seq > %s "
                           "ORDER BY seq", (task_id, after))
        rows += [(seq, data) for task, seq, data in self._p_log
                 if task == task_id and seq > after]
        return iter(rows)

    def output_append(self, task_id: str, text: str) -> int:
        """Append printed text to the task's output; its sequence number."""
        self._need_write()
        seqs = self._journal_seqs(task_id)
        seqs[1] += 1
        self._seqs_dirty.add(task_id)
        self._p_output.append((task_id, seqs[1], text))
        return seqs[1]

    def output_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, str]]:
        """The task's output numbered above ``after``, in order."""
        rows = self._query("SELECT seq, text FROM output WHERE task = %s AND seq > %s "
                           "ORDER BY seq", (task_id, after))
        rows += [(seq, text) for task, seq, text in self._p_output
                 if task == task_id and seq > after]
        return iter(rows)

    # work to do ------------------------------------------------------------------------

    def runnable_add(self, task_id: str) -> None:
        """Mark the task as having work to do (waking waiting workers if it had none)."""
        self._need_write()
        row = self._rows.get(task_id)
        if not (row is not None and row[1]) and not self._p_runnable.get(task_id):
            self._wake = True
        self._p_runnable[task_id] = True

    def runnable_remove(self, task_id: str) -> None:
        """Unmark it."""
        self._need_write()
        self._p_runnable[task_id] = False

    def _local(self, task_id: str) -> tuple[bool, float, str | None, float | None] | None:
        """(runnable, updated, lease worker, lease until) of a task this transaction
        changed, or None if that is not known without asking the database."""
        row = self._rows.get(task_id)
        pending = self._p_tasks.get(task_id)
        runnable = self._p_runnable.get(task_id)
        if runnable is None:
            if row is not None:
                runnable = row[1]
            elif task_id in self._absent:
                runnable = False
            else:
                return None
        if pending is not None:
            c = pending[1]
            return runnable, c.updated, c.lease_worker, c.lease_until
        if row is not None:
            return runnable, row[2], row[3], row[4]
        if task_id in self._absent or not runnable:
            return False, 0.0, None, None  # no record (yet): nothing to claim
        return None

    def claimable(self, worker: str, now: float, limit: int) -> list[str]:
        """Up to ``limit`` runnable task ids ``worker`` may lease at ``now`` (not leased,
        lease expired, or leased to ``worker``), oldest ``updated`` first, so that every
        task takes its turn; in a write transaction they are locked, and tasks another
        transaction holds are skipped (``FOR UPDATE SKIP LOCKED``)."""
        limit = max(0, limit)
        ahead, self._ahead_claim = self._ahead_claim, None
        local: dict[str, tuple[bool, float, str | None, float | None]] = {}
        for task_id in set(self._p_tasks) | set(self._p_runnable):
            state = self._local(task_id)
            if state is None:  # not known here: let the database judge it
                self._flush_tasks()
                local = {}
                break
            local[task_id] = state
        if self._write:
            wanted = limit + len(local)
            self._store._hint_claim = (worker, wanted) if wanted <= _AHEAD_MAX else None
        rows = None
        if ahead is not None and not self._sent_tasks and ahead[1] == worker and \
                limit <= ahead[2] and now == self.clock():
            fetched = self._fetch(ahead[0])
            rows = [r for r in fetched if r[0] not in local]
            if len(fetched) >= ahead[2] and len(rows) < limit:
                rows = None  # tasks beyond those asked ahead may belong here
            elif self.optimistic and any(r[4] != worker for r in rows):
                rows = None  # asked without locks: only this worker's own are taken so
            else:
                self._take_rows((r for r in rows if r[0] not in self._rows or
                                 r[0] in self._unverified), locked=not self.optimistic)
        if rows is None:
            lock = " FOR UPDATE SKIP LOCKED" if self._write else ""
            rows = self._query(_CLAIM + lock, (float(now), worker, list(local), limit))
            self._take_rows(rows)
        found = [(row[3], row[0]) for row in rows]
        for task_id, (runnable, updated, lease_worker, until) in local.items():
            if runnable and (until is None or until <= now or lease_worker == worker):
                found.append((updated, task_id))
        found.sort()
        out = [task_id for _, task_id in found[:limit]]
        if out and self._write:
            self._claimed = True
        return out

    def leased(self) -> list[str]:
        """The ids of the tasks that have a lease, in id order.  Only runnable tasks
        have one, so the claim index serves this without reading every task."""
        self._flush_tasks()
        return [row[0] for row in self._query(
            "SELECT id FROM tasks WHERE runnable AND lease_worker IS NOT NULL ORDER BY id")]

    def any_runnable(self) -> bool:
        """Whether any task is marked runnable."""
        self._flush_tasks()  # what is left pending is on tasks with no row (yet)
        return bool(self._query("SELECT EXISTS (SELECT 1 FROM tasks WHERE runnable)")[0][0])

    # workers ---------------------------------------------------------------------------

    def put_worker(self, worker: str, data: bytes) -> None:
        """Register or update a worker (``seen`` is the store's clock)."""
        self._need_write()
        self._p_workers[worker] = data

    def get_workers(self) -> dict[str, bytes]:
        """Every registered worker's record."""
        out = dict(self._query("SELECT id, data FROM workers ORDER BY id"))
        for worker, data in self._p_workers.items():
            if data is None:
                out.pop(worker, None)
            else:
                out[worker] = data
        return out

    def delete_worker(self, worker: str) -> None:
        """Forget a worker."""
        self._need_write()
        self._p_workers[worker] = None

    def worker_alive(self, worker: str) -> bool:
        """Whether the worker's liveness lock is held (by any session, on any host)."""
        return bool(self._query(_ALIVE, _alive_params(self._store.schema, worker))[0][0])


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with ``prefix``."""
    return re.sub(r"([\\%_])", r"\\\1", prefix) + "%"


# ---------------------------------------------------------------------------------------
# Worker liveness: a session-level advisory lock per worker, held on a connection of its
# own while the worker lives.  A killed worker's connection closes and the lock goes.

_ALIVE = ("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND "
          "database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
          "AND classid = %s::oid AND objid = %s::oid AND objsubid = 1 AND granted)")


def _worker_key(schema: str, worker: str) -> int:
    return _lock_key("flowmetal-worker", schema, worker)


def _alive_params(schema: str, worker: str) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows the worker's bigint advisory lock."""
    key = _worker_key(schema, worker) & 0xFFFF_FFFF_FFFF_FFFF
    return key >> 32, key & 0xFFFF_FFFF


class WorkerHold:
    """A worker's liveness lock, held while its connection stays open."""

    def __init__(self, conn: psycopg.Connection, key: int, worker: str):
        self._conn = conn
        self._key = key
        self.worker = worker

    def alive(self) -> bool:
        """Whether the lock is still held (its connection still works)."""
        try:
            self._conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def release(self) -> None:
        """Let go of the lock (another process may now take the worker's id)."""
        try:
            with contextlib.suppress(psycopg.Error):  # closing the session unlocks it too
                if not self._conn.closed:
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        finally:
            self._conn.close()

    def __enter__(self) -> WorkerHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------------------------------
# The store


class PostgresStore:
    """A store in a schema of a PostgreSQL database.  ``create`` makes the schema (or
    brings an older one up to date) if needed; without it a missing or older schema is
    refused with a pointer to ``flowmetal store init``."""

    single_writer = False  # many write transactions at once: drafts do not pay off

    def __init__(self, url: str, create: bool = True, connect_timeout: float = CONNECT_TIMEOUT,
                 max_connections: int = 4):
        self.url = url
        self.conninfo, self.schema, self.location = parse_url(url)
        self.connect_timeout = connect_timeout
        name = f"flowmetal_{self.schema}"
        self.channel = name if len(name) <= 63 else \
            "flowmetal_" + hashlib.sha1(self.schema.encode()).hexdigest()[:20]
        self._max_connections = max(1, max_connections)
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._listener: psycopg.Connection | None = None
        self._listen_lock = threading.Lock()
        # What the last round asked (see ``PgTables``): (worker, limit) of its claim
        # query and the limit of its timers query.
        self._hint_claim: tuple[str, int] | None = None
        self._hint_timers: int | None = None
        # The last write transaction's task rows (id -> (row, seqs)), and the write
        # transaction begun ahead by a worker's round (see ``PgTables``).
        self._kept: dict[str, tuple[_Row, tuple[int, int]]] = {}
        self._ahead: _Ahead | None = None
        self.init(create)
        self.open()

    # connections -----------------------------------------------------------------------

    def _connect(self, **kwargs: Any) -> psycopg.Connection:
        """A connection of its own (not from the pool)."""
        try:
            return psycopg.connect(self.conninfo, connect_timeout=max(1, round(
                self.connect_timeout)), **kwargs)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the store at {self.location}: "
                                   f"{str(exc).strip()}") from None

    def open(self) -> None:
        """Open the connection pool (done by the constructor; again after ``close``)."""
        with self._pool_lock:
            if self._pool is not None:
                return
            pool = psycopg_pool.ConnectionPool(
                self.conninfo, min_size=1, max_size=self._max_connections, open=False,
                kwargs={"connect_timeout": max(1, round(self.connect_timeout)),
                        "prepare_threshold": 1, "autocommit": True},
                timeout=self.connect_timeout, name=f"flowmetal:{self.schema}",
                reconnect_timeout=max(60.0, self.connect_timeout))
            try:
                pool.open(wait=True, timeout=self.connect_timeout)
            except psycopg.Error:
                pool.close()
                raise StoreUnavailable(f"cannot connect to the store at {self.location} "
                                       f"within {self.connect_timeout:g} s") from None
            self._pool = pool

    def _get_pool(self) -> psycopg_pool.ConnectionPool:
        pool = self._pool
        if pool is None:
            raise StoreError(f"the store at {self.location} is closed")
        return pool

    def close(self) -> None:
        """Close the pool and the listening connection."""
        with self._pool_lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self._drop_ahead(ahead)
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    # transactions ----------------------------------------------------------------------

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[PgTables]:
        # Connections are in autocommit mode: BEGIN and COMMIT are sent in the pipeline
        # with the statements, so that neither costs a round trip of its own.
        ahead = self._take_ahead() if write else None
        pool = self._get_pool()
        if ahead is not None:
            conn, context, pipeline = ahead.conn, ahead.context, ahead.pipeline
        else:
            try:
                conn = pool.getconn()
            except psycopg.Error as exc:
                raise _fault(exc, self.location) from None
            context = pipeline = None
        broken = keep = False
        tables: PgTables | None = None
        try:
            try:
                if context is None:
                    context = conn.pipeline()
                    pipeline = context.__enter__()
                tables = PgTables(self, conn, write, ahead)
                try:
                    yield tables
                    tables._finish()
                    if tables._committed_raw:  # sent and synced through libpq
                        keep = tables._next is not None
                    elif tables._next is not None:
                        pipeline.sync()  # the commit and the next transaction's start
                        keep = True
                    else:
                        context, leave = None, context
                        leave.__exit__(None, None, None)  # one sync: the commit
                except psycopg.Error:
                    if tables._commit_ok():
                        keep = False  # committed; what failed is the next one's start
                    else:
                        self._kept = {}
                        raise
                except BaseException:
                    self._kept = {}
                    raise
                tables._committed()
            except psycopg.Error as exc:
                if tables is not None:
                    raise tables._fail(exc) from None
                raise _fault(exc, self.location) from None
        except StoreUnavailable as exc:
            broken = not isinstance(exc, StoreConflict)
            raise
        finally:
            if keep:
                assert tables is not None and tables._next is not None
                nxt = tables._next
                nxt.conn, nxt.context, nxt.pipeline = conn, context, pipeline
                nxt.at, nxt.thread = time.monotonic(), threading.get_ident()
                with self._pool_lock:
                    old, self._ahead = self._ahead, nxt
                if old is not None:
                    self._drop_ahead(old)
            else:
                _end(conn, context, pipeline, rollback=tables is None or
                     not tables._commit_ok())
                pool.putconn(conn)
                if broken:
                    _check_pool(pool)

    def _take_ahead(self) -> _Ahead | None:
        """The write transaction this thread's last round began, if it is recent."""
        with self._pool_lock:
            ahead = self._ahead
            if ahead is None:
                return None
            fresh = time.monotonic() - ahead.at <= AHEAD_SECONDS
            if ahead.thread != threading.get_ident() and fresh:
                return None
            self._ahead = None
        if fresh:
            return ahead
        self._drop_ahead(ahead)
        return None

    def _drop_ahead(self, ahead: _Ahead) -> None:
        """Roll a transaction begun ahead back and give its connection back."""
        _end(ahead.conn, ahead.context, ahead.pipeline, rollback=True)
        pool = self._pool
        if pool is not None:
            pool.putconn(ahead.conn)
        else:
            ahead.conn.close()

    def read(self) -> Any:
        """A read-only snapshot transaction (a context manager yielding ``PgTables``)."""
        return self._transaction(False)

    def write(self) -> Any:
        """A write transaction, committed on leaving the block without error; a fault
        raises ``StoreUnavailable`` (``StoreConflict`` for a lost race)."""
        return self._transaction(True)

    def run_write(self, fn: Callable[[PgTables], T], attempts: int = 5) -> T:
        """``fn(tables)`` in a write transaction, run again (up to ``attempts`` times in
        all, after a short random pause) when it loses a race."""
        for attempt in range(max(1, attempts)):
            try:
                with self.write() as tables:
                    return fn(tables)
            except StoreConflict:
                if attempt + 1 >= attempts:
                    raise
                time.sleep(random.uniform(0, 0.01 * 2 ** attempt))
        raise AssertionError("unreachable")

    # the schema ------------------------------------------------------------------------

    def init(self, create: bool = True) -> int:
        """Check the schema's version, creating or migrating it if ``create``; the
        version.  Safe to run from several processes at once."""
        return _init(self._connect(), self.schema, self.location, create)

    def drop(self) -> None:
        """Delete the store's schema and everything in it (for tests)."""
        self.close()
        conn = self._connect(autocommit=True)
        try:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))
        except psycopg.Error as exc:
            raise _fault(exc, self.location) from None
        finally:
            conn.close()

    def size_bytes(self) -> int:
        """Bytes the schema's tables take, with their indexes and TOAST."""
        with self.read() as t:
            rows = t._query("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 "
                            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = %s AND c.relkind = 'r'", (self.schema,))
        return int(rows[0][0])

    # wake-ups --------------------------------------------------------------------------

    def listen(self) -> None:
        """Start listening for work (``wait_for_work`` does it; start earlier so that no
        wake-up between a look for work and the first wait is missed)."""
        with self._listen_lock:
            self._listen()

    def _listen(self) -> psycopg.Connection:
        conn = self._listener
        if conn is not None and not conn.closed:
            return conn
        conn = self._connect(autocommit=True)
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error as exc:
            conn.close()
            raise _fault(exc, self.location) from None
        self._listener = conn
        return conn

    def wait_for_work(self, timeout: float) -> None:
        """Return when a write transaction made a task runnable or armed a timer, or
        after ``timeout`` seconds."""
        with self._listen_lock:
            conn = self._listen()
            try:
                next(conn.notifies(timeout=max(0.0, timeout), stop_after=1), None)
                # the rest come to the same: drain them
                collections.deque(conn.notifies(timeout=0), maxlen=0)
            except psycopg.Error as exc:
                conn.close()
                self._listener = None
                raise _fault(exc, self.location) from None

    # workers ---------------------------------------------------------------------------

    def hold_worker(self, worker: str) -> WorkerHold:
        """Take the worker's liveness lock on a connection of its own (StoreError if
        another live process holds it), and start listening for work."""
        conn = self._connect(autocommit=True, keepalives=1, keepalives_idle=10,
                             keepalives_interval=5, keepalives_count=3)
        key = _worker_key(self.schema, worker)
        try:
            # The server notices a vanished host by these (a killed process at once).
            conn.execute("SET tcp_keepalives_idle = 10")
            conn.execute("SET tcp_keepalives_interval = 5")
            conn.execute("SET tcp_keepalives_count = 3")
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise _fault(exc, self.location) from None
        if not (row and row[0]):
            conn.close()
            raise StoreError(f"worker {worker} is already running on the store at "
                             f"{self.location}")
        hold = WorkerHold(conn, key, worker)
        try:
            self.listen()  # from now on no wake-up is missed
        except StoreError:
            hold.release()
            raise
        return hold

    def worker_alive(self, worker: str) -> bool:
        """Whether the worker's liveness lock is held, by a process on any host."""
        with self.read() as t:
            return t.worker_alive(worker)


def _end(conn: psycopg.Connection, context: Any, pipeline: Any, rollback: bool) -> None:
    """Leave pipeline mode (if still in it) and, with ``rollback``, end the transaction
    (if one is open): the connection can go back to the pool."""
    with contextlib.suppress(psycopg.Error):  # a broken connection is dropped anyway
        if context is not None:
            if rollback:
                with contextlib.suppress(psycopg.Error):
                    pipeline.sync()  # the results of an aborted pipeline
                conn.rollback()
            context.__exit__(None, None, None)
        if conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            conn.rollback()


def _check_pool(pool: psycopg_pool.ConnectionPool) -> None:
    """After a connection broke, drop the idle ones that broke with it."""
    with contextlib.suppress(psycopg.Error):
        pool.check()


def _schema_version(cur: psycopg.Cursor, schema: str) -> int | None:
    """The schema's version (None: no store there)."""
    cur.execute("SELECT to_regclass(%s)", (f"{schema}.meta",))
    row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    cur.execute(sql.SQL("SELECT value FROM {}.meta WHERE key = 'version'").format(
        sql.Identifier(schema)))
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _check_version(version: int | None, location: str, create: bool) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(f"the store at {location} has schema version {version}; "
                         f"this Flowmetal knows up to {SCHEMA_VERSION}: upgrade Flowmetal")
    if not create:
        if version is None:
            raise StoreError(f"no Flowmetal store at {location}: run `flowmetal store init` "
                             "first")
        if version < SCHEMA_VERSION:
            raise StoreError(f"the store at {location} has schema version {version}; this "
                             f"Flowmetal needs {SCHEMA_VERSION}: run `flowmetal store init` "
                             "to migrate it")


def _init(conn: psycopg.Connection, schema: str, location: str, create: bool) -> int:
    """Check (and with ``create``, make or migrate) the schema on ``conn``, then close it.

    Each migration runs in a transaction of its own under an advisory lock on the
    schema's name, and first reads the version again: processes that start at once
    apply each migration once."""
    try:
        with conn:
            cur = conn.cursor()
            version = _schema_version(cur, schema)
            conn.commit()
            if version == SCHEMA_VERSION:
                return version
            _check_version(version, location, create)
            for target in range(version or 0, SCHEMA_VERSION):
                with conn.transaction():
                    cur.execute("SELECT pg_advisory_xact_lock(%s)",
                                (_lock_key("flowmetal-schema", schema),))
                    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(schema)))
                    now = _schema_version(cur, schema) or 0
                    _check_version(now, location, True)
                    if now > target:
                        continue  # another process got there first
                    cur.execute(sql.SQL("SET LOCAL search_path = {}").format(
                        sql.Identifier(schema)))
                    cur.execute(MIGRATIONS[target])
                    cur.execute("UPDATE meta SET value = %s WHERE key = 'version'",
                                (str(target + 1),))
            return SCHEMA_VERSION
    except psycopg.Error as exc:
        raise _fault(exc, location) from None


def init_schema(url: str, connect_timeout: float = CONNECT_TIMEOUT) -> int:
    """Create or migrate the store at ``url`` (``flowmetal store init``); its version."""
    conninfo, schema, location = parse_url(url)
    try:
        conn = psycopg.connect(conninfo, connect_timeout=max(1, round(connect_timeout)))
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot connect to the store at {location}: "
                               f"{str(exc).strip()}") from None
    return _init(conn, schema, location, True)
