"""/metrics shows every family operations asked for, after a job has run."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from vidgen.jobs.worker import Worker

GENERATE = """
mutation($p: String!) { generateVideo(input: {prompt: $p, provider: "test"}) { id status } }
"""

FAMILIES = {
    "vidgen_http_requests",
    "vidgen_graphql_operations",
    "vidgen_graphql_errors",
    "vidgen_jobs",
    "vidgen_queue_depth",
    "vidgen_queue_oldest_due_age_seconds",
    "vidgen_job_attempts",
    "vidgen_job_duration_seconds",
    "vidgen_job_retries",
    "vidgen_job_rescues",
    "vidgen_active_subscriptions",
    "vidgen_bus_reconnects",
}


def _samples(text: str) -> dict[str, list]:
    """Samples by family name AND by sample name (counters' samples end in _total)."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = list(family.samples)
        for sample in family.samples:
            if sample.name != family.name:
                out.setdefault(sample.name, []).append(sample)
    return out


async def test_metrics_after_a_job(live_server, alice) -> None:
    ok = await live_server.gql(GENERATE, {"p": "succeed"}, token=alice.token)
    assert ok["data"]["generateVideo"]["status"] == "QUEUED"
    bad = await live_server.gql(GENERATE, {"p": "  "}, token=alice.token)
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    before = await live_server.client.get("/metrics")
    queued = _samples(before.text)
    assert [s.value for s in queued["vidgen_queue_depth"]] == [1.0]

    worker = Worker(live_server.runtime, concurrency=2)
    assert await worker.run_until_idle() == 1

    response = await live_server.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    missing = FAMILIES - set(samples)
    assert not missing, f"families missing from /metrics: {missing}"

    def value(name: str, **labels: str) -> float:
        return sum(
            s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert value("vidgen_jobs", status="completed", provider="test") == 1
    assert value("vidgen_jobs", status="queued", provider="test") == 0
    assert value("vidgen_queue_depth") == 0
    assert value("vidgen_queue_oldest_due_age_seconds") == 0
    assert value("vidgen_job_attempts", outcome="succeeded") == 1
    assert value("vidgen_graphql_errors_total", code="BAD_USER_INPUT") >= 1
    assert value("vidgen_graphql_operations_total", type="mutation") >= 2
    assert value("vidgen_http_requests_total", route="/graphql", method="POST") >= 2
    assert value("vidgen_job_duration_seconds_count", provider="test", outcome="succeeded") >= 1
    # No request path (with ids) ever becomes a label.
    assert not re.search(r'route="/media/u\d', response.text)
