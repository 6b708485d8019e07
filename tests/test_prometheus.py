"""SLI values from a real Prometheus server (Debian's package) scraping a small exporter
this test serves with fixed metrics.

Without ``prometheus`` on the PATH these tests are skipped, saying so, unless
``FLOWMETAL_REQUIRE_PROMETHEUS=1`` (as ``.ci/run`` sets): then they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from flowmetal.sequences.evaluation import evaluate
from flowmetal.sequences.prometheus import (
    PrometheusError,
    answer_value,
    query_values,
    substitute,
)
from flowmetal.sequences.slo import parse_sli, parse_slo

from .cli_helpers import TIMEOUT, env
from .threaded_app import ThreadedApp

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
READY_WITHIN = 15.0  # seconds for Prometheus to start and scrape the exporter once

METRICS = """\
# TYPE app_response_time_ms gauge
app_response_time_ms 420
# TYPE app_requests gauge
app_requests 400
# TYPE app_errors gauge
app_errors 10
# TYPE app_throughput gauge
app_throughput 41.5
# TYPE app_requests_by_code gauge
app_requests_by_code{code="200"} 390
app_requests_by_code{code="500"} 10
"""

INDICATORS = {
    "response_time_p95": 'max_over_time(app_response_time_ms{job="$SERVICE"}[$DURATION_SECONDS])',
    "error_rate": '100 * sum(app_errors{job="$SERVICE"}) / sum(app_requests{job="$SERVICE"})',
    "throughput": 'scalar(app_throughput{job="$SERVICE"})',
    "absent": 'app_no_such_metric{job="$SERVICE"}',
}


def _prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if found is None:
        why = "the prometheus binary is not installed (apt-get install prometheus)"
        if os.environ.get("FLOWMETAL_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"{why}, and FLOWMETAL_REQUIRE_PROMETHEUS=1")
        pytest.skip(why)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exporter() -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=METRICS, content_type="text/plain")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/slow/api/v1/query", slow)
    return app


class Prometheus:
    """A Prometheus server on a free loopback port, scraping ``target`` every second."""

    def __init__(self, binary: str, target: str, home: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home.mkdir()
        config = home / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: carts\n    static_configs:\n"
            f"      - targets: [\"{target}\"]\n")
        self.log = (home / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.home = home

    def wait_until_scraped(self) -> None:
        """Wait until the exporter's metrics have been scraped."""
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if asyncio.run(self._scraped()):
                return
            time.sleep(0.2)
        self.stop()
        raise AssertionError("Prometheus did not scrape the exporter within "
                             f"{READY_WITHIN} s:\n{(self.home / 'prometheus.log').read_text()}")

    async def _scraped(self) -> bool:
        async with aiohttp.ClientSession() as session:
            try:
                values = await query_values(self.url, {"up": 'up{job="carts"} == 1',
                                                       "rt": "app_response_time_ms"},
                                            time.time() - 1, time.time(), session, timeout=2)
            except PrometheusError:
                return False
        return values == {"up": 1.0, "rt": 420.0}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def exporter():
    app = ThreadedApp(_exporter(), "the exporter").start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def prometheus(exporter, tmp_path_factory):
    server = Prometheus(_prometheus_binary(), f"127.0.0.1:{exporter.port}",
                        tmp_path_factory.mktemp("prom") / "home")
    server.wait_until_scraped()
    yield server
    server.stop()


def values_of(url: str, indicators: dict[str, str], timeout: float = 5.0) -> dict:
    async def ask() -> dict:
        async with aiohttp.ClientSession() as session:
            end = time.time()
            return await query_values(url, indicators, end - 60, end, session, timeout,
                                      {"SERVICE": "carts"})
    return asyncio.run(ask())


def test_placeholders():
    assert substitute("[$DURATION_SECONDS] $SERVICE $SERVICE_NAME $mz_id $MZ_ID", 0, 299.5,
                      {"SERVICE": "carts", "SERVICE_NAME": "x", "mz_id": "4711"}) == \
        "[300s] carts x 4711 4711"


def test_answers():
    def vector(*samples: str) -> dict:
        return {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1.5, s]} for s in samples]}}

    assert answer_value("rt", vector("420")) == 420.0
    assert answer_value("rt", vector()) is None
    assert answer_value("rt", vector("NaN")) is None
    assert answer_value("rt", vector("+Inf")) is None
    assert answer_value("rt", {"status": "success",
                               "data": {"resultType": "scalar", "result": [1.5, "2"]}}) == 2.0
    with pytest.raises(PrometheusError, match="SLI rt: the query failed \\(bad_data\\): no"):
        answer_value("rt", {"status": "error", "errorType": "bad_data", "error": "no"})
    with pytest.raises(PrometheusError, match="not a Prometheus API response"):
        answer_value("rt", ["status"])


def test_values_from_prometheus_evaluate(prometheus):
    values = values_of(prometheus.url, INDICATORS)
    assert values == {"response_time_p95": 420.0, "error_rate": 2.5, "throughput": 41.5,
                      "absent": None}
    ev = evaluate(parse_slo((EXAMPLES / "slo.yaml").read_text(), "slo.yaml"), values, [])
    # response time passes (420 < 600, nothing earlier): 2; error rate 2.5 warns: 0.5;
    # 2.5 / 3 = 83.3%, at least 75% and under 90%
    assert (ev.result, ev.score) == ("warning", pytest.approx(250 / 3))


def test_the_example_sli_file_queries(prometheus):
    indicators = parse_sli((EXAMPLES / "sli.yaml").read_text(), "sli.yaml")
    values = values_of(prometheus.url, indicators)
    # the exporter has none of the example's metrics: every query is valid and empty
    assert values == {name: None for name in indicators}


@pytest.mark.parametrize(("query", "message"), [
    ("sum(", "SLI bad: query 'sum(' failed (bad_data): "),
    ("app_requests_by_code", "SLI bad: the query gave 2 series; an SLI query must give one"),
    ("app_requests[1m]", "SLI bad: the query gave a matrix"),
])
def test_query_errors(prometheus, query, message):
    with pytest.raises(PrometheusError) as info:
        values_of(prometheus.url, {"ok": "app_requests", "bad": query})
    assert message in str(info.value)


def test_servers_that_do_not_answer(exporter):
    with pytest.raises(PrometheusError, match="without a Prometheus API response"):
        values_of(exporter.url(), {"rt": "up"})
    started = time.monotonic()
    with pytest.raises(PrometheusError, match=r"SLI rt: .* did not answer within 0.5 s"):
        values_of(exporter.url("/slow"), {"rt": "up"}, timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_the_command_asks_prometheus(prometheus, tmp_path):
    (tmp_path / "sli.yaml").write_text(json.dumps(
        {"spec_version": "1.0", "indicators": {k: v for k, v in INDICATORS.items()
                                               if k != "absent"}}))
    end = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "flowmetal", "evaluate", str(EXAMPLES / "slo.yaml"),
         "--prometheus", prometheus.url, "--sli", "sli.yaml", "--var", "SERVICE=carts",
         "--start", str(end - 60), "--end", str(end)],
        env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["result"], out["score"]) == ("warning", pytest.approx(250 / 3))
    assert [i["value"]["value"] for i in out["indicatorResults"]] == [420.0, 2.5, 41.5]
