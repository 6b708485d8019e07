"""One slice of a task's machine: bounded in reductions, in time and in frames, and given
up at once when the process is asked to stop.

A worker runs each leased task for one slice, then commits.  The slice's reductions grow
with the task's state (a big state is costly to commit), but its time does not: it
ends after ``SLICE_SECONDS`` whatever its fuel, so a big busy task never holds its worker
away from the others for long.  The machine runs in chunks of ``CHUNK`` reductions; the
time is looked at between chunks, and so is the depth: a transition adds at most a few
frames (``FRAMES_PER_REDUCTION``), so the frames are counted only when that bound passes
the task's depth limit, and the slice ends as soon as the continuation is too deep,
before a worker spends memory on frames it will refuse.

Stopping: ``request_stop`` (called by the SIGINT/SIGTERM handler of the command line)
raises ``Interrupted`` out of a slice running in the main thread at once, even in the
middle of a long primitive.  The slice's work is dropped: the task stays at its last
committed step, which a later worker resumes.  (Long C-level work cannot be interrupted
by a signal; the size checks of ``limits`` keep each such call short.)
"""

from __future__ import annotations

import threading
import time
from typing import Any

SLICE_SECONDS = 0.1
CHUNK = 1_000
FRAMES_PER_REDUCTION = 4


class Interrupted(BaseException):
    """A stop request that abandoned the slice running when it came.  A BaseException,
    so that no ``except Exception`` of the machine or a primitive takes it for an error
    of the task."""


class _Stop:
    """Whether a stop was asked for, and whether the main thread is inside a slice."""

    requested = False
    inside = False


_STOP = _Stop()
_MAIN_THREAD = threading.main_thread().ident


def request_stop() -> None:
    """Ask this process to stop: a slice running in the main thread is abandoned now
    (``Interrupted`` is raised where it stands), and no new one starts."""
    _STOP.requested = True
    if _STOP.inside:
        _STOP.inside = False
        raise Interrupted


def stop_requested() -> bool:
    """True once ``request_stop`` was called (until ``reset_stop``)."""
    return _STOP.requested


def reset_stop() -> None:
    """Forget an earlier stop request (a new run begins)."""
    _STOP.requested = False


def count_frames(k: Any, limit: int) -> int:
    """Frames in a continuation, counting at most ``limit + 1``."""
    n = 0
    while k is not None and n <= limit:
        n += 1
        k = k[1]
    return n


def run_slice(m: Any, fuel: int, depth: int, frames: int,
              seconds: float = SLICE_SECONDS) -> int:
    """Run machine ``m`` for at most ``fuel`` reductions and about ``seconds``, stopping
    early once its continuation is deeper than ``depth`` frames.  ``frames`` bounds the
    frames it has now; the result bounds them after the slice, and is exact when it is
    over ``depth``.  Raises ``Interrupted`` on a stop request (main thread only)."""
    main = threading.get_ident() == _MAIN_THREAD
    if main:
        if _STOP.requested:
            raise Interrupted
        _STOP.inside = True
    try:
        deadline = time.monotonic() + seconds
        end = m.reductions + fuel
        while m.status == "running" and m.reductions < end:
            before = m.reductions
            m.run(min(CHUNK, end - before))
            frames += FRAMES_PER_REDUCTION * (m.reductions - before)
            if frames > depth:
                frames = count_frames(m.k, depth)
                if frames > depth:
                    break
            if time.monotonic() >= deadline:
                break
    finally:
        if main:
            _STOP.inside = False
    return frames
