"""The audit over HTTP, in every mode: a recount starts at once, runs off the serving path, and its
progress shows in GET /admin/audit and its result at GET /admin/audit/recount."""
from __future__ import annotations

import pytest

from tests.conftest import ADMIN
from tests.support import Api, until


@pytest.fixture
def api(client) -> Api:
    return Api(client, ADMIN)


async def test_a_recount_answers_at_once_and_its_result_shows_in_the_audit(api: Api) -> None:
    r = await api.c.post("/admin/audit/recount", headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["state"] in ("running", "done"), r.text
    unauthorised = await api.c.post("/admin/audit/recount")
    assert unauthorised.status_code == 401, unauthorised.text

    async def done() -> dict | None:
        audit = await api.get("/admin/audit")
        if "recount" in audit:  # running: its progress shows in the audit
            assert audit["recount"]["state"] == "running", audit
            return None
        return audit

    audit = await until(done, 60.0, every_s=0.2)
    assert audit is not None, "the recount never finished"
    # A clean recount's result is kept at its own address; the audit is back to its three fields.
    assert {"consistent", "violations", "pending"} <= set(audit) and "recount" not in audit, audit
    recount = await api.get("/admin/audit/recount")
    assert recount["state"] == "done" and recount["violations"] == [], recount
    assert recount["startedAt"] <= recount["finishedAt"]
    assert (await api.c.get("/admin/audit/recount")).status_code == 401
