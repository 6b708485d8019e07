"""SLI values from a Prometheus server's HTTP API, as Keptn's prometheus-service gets them.

Each SLI's query is sent to ``/api/v1/query`` evaluated at the end of the evaluation's
time range, after its placeholders are replaced: ``$DURATION_SECONDS`` by the range's
length (``300s``), and ``$NAME`` by each variable given (Keptn's ``$PROJECT``,
``$STAGE``, ``$SERVICE``, ``$DEPLOYMENT``, ``$LABEL.<name>`` and the SLO's filter keys,
which Keptn also accepts upper-cased).  A query whose result is empty has no value
(None; Keptn's service reported 0, which would pass a ``<=`` criterion unseen), nor has
NaN or an infinity (they have no JSON form); one that gives several series, or a server
that cannot be reached or refuses a query, is a ``PrometheusError`` naming the SLI.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

import aiohttp


class PrometheusError(Exception):
    """The server could not be asked, or refused or could not answer a query."""


def _seconds(t: float | datetime) -> float:
    return t.timestamp() if isinstance(t, datetime) else float(t)


def substitute(query: str, start: float | datetime, end: float | datetime,
               variables: dict[str, str] | None = None) -> str:
    """``query`` with its placeholders replaced (longer names first, so ``$SERVICE`` is
    not taken out of ``$SERVICE_NAME``)."""
    names: dict[str, str] = {}
    for name, value in (variables or {}).items():
        names[name] = value
        names.setdefault(name.upper(), value)
    names["DURATION_SECONDS"] = f"{math.ceil(_seconds(end) - _seconds(start))}s"
    for name in sorted(names, key=len, reverse=True):
        query = query.replace("$" + name, names[name])
    return query


async def query_values(base_url: str, indicators: dict[str, str], start: float | datetime,
                       end: float | datetime, session: aiohttp.ClientSession,
                       timeout: float = 30.0, variables: dict[str, str] | None = None
                       ) -> dict[str, float | None]:
    """The value of each SLI's query (None: the query gave no value) over ``start`` to
    ``end``, one ``/api/v1/query`` request per SLI, made at once."""
    at = _seconds(end)
    url = base_url.rstrip("/") + "/api/v1/query"
    names = list(indicators)
    answers = await asyncio.gather(*(
        _query(session, url, name, substitute(indicators[name], start, end, variables), at,
               timeout) for name in names))
    return dict(zip(names, answers, strict=True))


async def _query(session: aiohttp.ClientSession, url: str, sli: str, query: str, at: float,
                 timeout: float) -> float | None:
    try:
        async with session.get(url, params={"query": query, "time": repr(at)},
                               timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            status = resp.status
    except TimeoutError:
        raise PrometheusError(f"SLI {sli}: Prometheus at {url} did not answer within "
                              f"{timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise PrometheusError(f"SLI {sli}: Prometheus at {url} cannot be reached: "
                              f"{exc or type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise PrometheusError(f"SLI {sli}: {url} answered {status} without a Prometheus "
                              "API response (is it a Prometheus server?)")
    return answer_value(sli, body, query)


def _value(sli: str, data: Any) -> float | None:
    if not isinstance(data, dict):
        raise PrometheusError(f"SLI {sli}: the answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        sample = result
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"SLI {sli}: the query gave {len(result)} series; an SLI "
                                  "query must give one value (aggregate it, e.g. with sum)")
        sample = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        raise PrometheusError(f"SLI {sli}: the query gave a {kind}; an SLI query must give "
                              "one value (an instant vector of one series, or a scalar)")
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError):
        raise PrometheusError(f"SLI {sli}: the answer's sample {sample!r} is not a "
                              "value") from None
    return value if math.isfinite(value) else None  # NaN and ±Inf have no JSON form


def answer_value(sli: str, body: Any, query: str | None = None) -> float | None:
    """The SLI's value in a Prometheus API answer (``/api/v1/query``'s JSON body), as
    ``query_values`` takes it (None: the query gave none); PrometheusError if the query
    failed or gave more than one value."""
    if not isinstance(body, dict):
        raise PrometheusError(f"SLI {sli}: the answer is not a Prometheus API response")
    if body.get("status") != "success":
        what = "the query" if query is None else f"query {query!r}"
        raise PrometheusError(f"SLI {sli}: {what} failed ({body.get('errorType', 'error')}): "
                              f"{body.get('error', '')}")
    return _value(sli, body.get("data"))
