"""GET /exports/{job id}: the export file, for those who may see the job, once it is done."""

from __future__ import annotations

import pytest

from app.graphql.ids import to_global_id
from app.jobs.audit_export import export_path
from app.models import Job, JobState

GA = "Service Provider Global Administrator"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path))
    return tmp_path


async def _export_job(world, state: JobState) -> Job:
    job = await Job.create(
        kind="audit_log_export", functionality="LOGS", organization=world.orgs["A1"], state=state
    )
    if state is JobState.SUCCEEDED:
        path = export_path(job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("id,at,action\n1,2026-11-29,login\n")
        await Job.filter(id=job.id).update(result={"path": str(path), "rows": 1})
    return job


async def test_the_file_downloads_for_someone_in_scope(world, client, gql, data_dir):
    job = await _export_job(world, JobState.SUCCEEDED)
    token = world.token("R1", GA)
    body = await gql(
        "query($id: ID!) { job(id: $id) { downloadUrl } }",
        {"id": to_global_id("Job", job.id)},
        token=token,
    )
    url = body["data"]["job"]["downloadUrl"]
    assert url == f"/exports/{to_global_id('Job', job.id)}"
    resp = await client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.text == "id,at,action\n1,2026-11-29,login\n"


async def test_refusals_carry_the_usual_codes(world, client, data_dir):
    job = await _export_job(world, JobState.SUCCEEDED)
    url = f"/exports/{to_global_id('Job', job.id)}"
    anonymous = await client.get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    other = await client.get(url, headers={"Authorization": f"Bearer {world.token('R2', GA)}"})
    assert other.status_code == 404
    assert other.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    running = await _export_job(world, JobState.RUNNING)
    not_ready = await client.get(
        f"/exports/{to_global_id('Job', running.id)}",
        headers={"Authorization": f"Bearer {world.token('R1', GA)}"},
    )
    assert not_ready.status_code == 409
    assert not_ready.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
    bad = await client.get(
        "/exports/garbage", headers={"Authorization": f"Bearer {world.token('R1', GA)}"}
    )
    assert bad.status_code == 400
