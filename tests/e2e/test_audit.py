"""The audit over HTTP, in every mode: a recount starts at once, runs off the serving path, and its
progress and result show in GET /admin/audit."""
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
        return audit if audit["recount"]["state"] != "running" else None

    audit = await until(done, 60.0, every_s=0.2)
    assert audit is not None, "the recount never finished"
    recount = audit["recount"]
    assert recount["state"] == "done" and recount["violations"] == [], recount
    assert recount["startedAt"] <= recount["finishedAt"]
    assert {"consistent", "violations", "pending"} <= set(audit)
