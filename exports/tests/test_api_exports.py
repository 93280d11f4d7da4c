"""The exports API: a streamed export with the bars endpoint's checks and a size limit, and background
exports through their whole life (queued, written, downloaded, deleted, expired), each user's own."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.utils import timezone

from accounts.tests.clients import logged_in
from exports import services
from exports.api.views import StreamingExportResponse
from exports.models import Export, ExportStatus
from exports.tasks import delete_expired_exports_task, run_export_task
from exports.tests.conftest import stored_bars
from exports.writers import CSV_HEADER

STREAM = "/api/v1/exports/bars/"
JOBS = "/api/v1/exports/"


@pytest.fixture
def analyst(make_user):
    return make_user("analyst")


@pytest.fixture
def client(analyst):
    return logged_in(analyst)


@pytest.fixture
def series(make_series):
    return make_series(rows=3000)


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def error_of(response: Any) -> tuple[str, dict[str, Any]]:
    error = response.json()["error"]
    return error["message"], error["fields"]


# --- Streamed --------------------------------------------------------------------------------------


def test_a_streamed_csv_export_holds_every_bar_of_the_range_as_an_attachment(client, series):
    response = client.get(
        STREAM, {"instrument": series.pk, "start": "2017-11-05T00:00:00Z", "end": "2017-11-05T06:00:00Z"}
    )

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="binance_UNITTEST-BTC_1m_20171105T0000Z_20171105T0600Z.csv"'
    )
    lines = body_of(response).splitlines()
    expected = [
        bar
        for bar in stored_bars(series)
        if datetime(2017, 11, 5, tzinfo=UTC) <= bar[0] < datetime(2017, 11, 5, 6, tzinfo=UTC)
    ]
    assert lines[0] + b"\n" == CSV_HEADER
    assert len(lines) - 1 == len(expected) > 200
    assert lines[1].startswith(expected[0][0].strftime("%Y-%m-%dT%H:%M:%SZ").encode())


def test_a_streamed_json_export_is_json_lines(client, series):
    response = client.get(STREAM, {"instrument": series.pk, "format": "json"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].endswith('_1m_first_last.jsonl"')
    assert len(body_of(response).splitlines()) == 3000


def test_a_streamed_parquet_export_is_a_whole_parquet_file_of_the_stored_values(client, series):
    response = client.get(STREAM, {"instrument": series.pk, "format": "parquet"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(body_of(response))).to_pylist()
    assert [tuple(row.values()) for row in table] == stored_bars(series)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"timeframe": "2m"}, "timeframe"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, "end"),
        ({"instrument": "abc"}, "instrument"),
        ({"instrument": "0"}, "instrument"),
    ],
)
def test_bad_parameters_get_the_same_400_as_the_bars_endpoint(client, viewer_client, series, query, field):
    query = {"instrument": series.pk} | query

    exported = client.get(STREAM, query)
    bars = viewer_client.get("/api/v1/bars/", query)

    assert exported.status_code == bars.status_code == 400
    assert exported.json() == bars.json()
    assert field in exported.json()["error"]["fields"]


def test_an_unknown_instrument_or_format_is_named(client, series):
    unknown = client.get(STREAM, {"instrument": series.pk + 100})
    bad_format = client.get(STREAM, {"instrument": series.pk, "format": "xlsx"})

    assert unknown.status_code == 400
    assert error_of(unknown) == (
        f"instrument: no instrument with id {series.pk + 100}",
        {"instrument": [f"no instrument with id {series.pk + 100}"]},
    )
    assert bad_format.status_code == 400
    assert list(error_of(bad_format)[1]) == ["format"]


def test_a_range_above_the_limit_is_refused_with_a_pointer_to_background_exports(client, series, settings):
    settings.EXPORT_MAX_ROWS = 2999

    refused = client.get(STREAM, {"instrument": series.pk})
    settings.EXPORT_MAX_ROWS = 3000
    allowed = client.get(STREAM, {"instrument": series.pk})

    assert refused.status_code == 400
    message, fields = error_of(refused)
    assert "more than 2,999 bars in this range" in message
    assert "POST /api/v1/exports/" in message
    assert list(fields) == ["end"]
    assert allowed.status_code == 200


def test_viewers_may_not_export(viewer_client, series):
    assert viewer_client.get(STREAM, {"instrument": series.pk}).status_code == 403


# --- Background ------------------------------------------------------------------------------------


def create(client: Any, django_capture_on_commit_callbacks: Any, **body: Any) -> Any:
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(JOBS, body, content_type="application/json")


def test_a_background_export_is_queued_run_and_downloaded(
    client, series, export_dir, django_capture_on_commit_callbacks
):
    response = create(client, django_capture_on_commit_callbacks, instrument=series.pk, format="parquet")

    assert response.status_code == 201
    assert response.json()["status"] == "pending"  # as created; the job ran after the commit
    export_id = response.json()["id"]
    status = client.get(f"{JOBS}{export_id}/").json()
    assert status["status"] == "done"
    assert status["rows"] == 3000
    assert status["download"] == f"/api/v1/exports/{export_id}/download/"
    assert status["bytes"] == (export_dir / f"{export_id}.parquet").stat().st_size
    download = client.get(status["download"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/vnd.apache.parquet"
    assert 'filename="binance_UNITTEST-BTC_1m_first_last.parquet"' in download["Content-Disposition"]
    table = pq.read_table(io.BytesIO(body_of(download))).to_pylist()
    assert [tuple(row.values()) for row in table] == stored_bars(series)


def test_a_background_csv_export_is_the_streamed_one_byte_for_byte(
    client, series, export_dir, django_capture_on_commit_callbacks
):
    query = {"instrument": series.pk, "start": "2017-11-05T00:00:00Z", "end": "2017-11-06T00:00:00Z"}

    export_id = create(client, django_capture_on_commit_callbacks, **query).json()["id"]

    assert body_of(client.get(f"{JOBS}{export_id}/download/")) == body_of(client.get(STREAM, query))


def test_a_download_before_the_export_is_done_is_a_409(client, series, export_dir):
    export = services.create_export(client_user(client), series, "1m", None, None, "csv", now=timezone.now())

    response = client.get(f"{JOBS}{export.pk}/download/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_ready"
    assert "pending" in response.json()["error"]["message"]


def client_user(client: Any) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def test_running_a_done_export_again_changes_nothing(analyst, series, export_dir):
    export = services.create_export(analyst, series, "1m", None, None, "csv", now=timezone.now())
    run_export_task(export.pk)
    done = Export.objects.get(pk=export.pk)
    written = (export_dir / done.file).stat()

    assert run_export_task(export.pk) == f"export {export.pk}: done, 3000 rows, {done.bytes} bytes"
    again = Export.objects.get(pk=export.pk)
    assert (again.status, again.finished_at, again.file) == (ExportStatus.DONE, done.finished_at, done.file)
    assert (export_dir / done.file).stat().st_mtime_ns == written.st_mtime_ns
    assert run_export_task(export.pk + 1000) == f"export {export.pk + 1000}: gone"


def test_a_failing_export_records_the_error_and_leaves_no_file(analyst, series, export_dir, client):
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    export_dir.write_text("a file where the export directory should be")
    export = services.create_export(analyst, series, "1m", None, None, "csv", now=timezone.now())

    run_export_task(export.pk)

    failed = Export.objects.get(pk=export.pk)
    assert failed.status == ExportStatus.FAILED
    assert "FileExistsError" in failed.error or "NotADirectoryError" in failed.error
    assert (failed.file, failed.rows) == ("", 0)
    assert client.get(f"{JOBS}{export.pk}/download/").status_code == 409


def test_a_crash_in_the_middle_of_writing_leaves_neither_a_file_nor_a_partial_one(series, export_dir, monkeypatch):
    def breaks_halfway(*args):
        yield b"time,open\n"
        raise OSError("disk full")

    monkeypatch.setattr(services, "export_bytes", breaks_halfway)
    export_dir.mkdir(parents=True)

    with pytest.raises(OSError, match="disk full"):
        services.write_export_file(export_dir / "1.csv", "csv", series.pk, "1m", None, None)
    assert list(export_dir.iterdir()) == []


def test_deleting_an_export_removes_its_row_and_file(client, series, export_dir, django_capture_on_commit_callbacks):
    export_id = create(client, django_capture_on_commit_callbacks, instrument=series.pk).json()["id"]
    assert (export_dir / f"{export_id}.csv").exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(f"{JOBS}{export_id}/")

    assert response.status_code == 204
    assert not Export.objects.filter(pk=export_id).exists()
    assert list(export_dir.iterdir()) == []


def test_expired_exports_are_deleted_with_their_files_and_the_others_kept(
    analyst, series, export_dir, django_capture_on_commit_callbacks, settings
):
    settings.EXPORT_TTL_HOURS = 2
    old, new = (services.create_export(analyst, series, "1m", None, None, "csv", now=timezone.now()) for _ in range(2))
    for export in (old, new):
        run_export_task(export.pk)
    Export.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports_task() == "1 expired export(s) deleted"

    assert list(Export.objects.values_list("pk", flat=True)) == [new.pk]
    assert sorted(path.name for path in export_dir.iterdir()) == [f"{new.pk}.csv"]
    assert timezone.now() + timedelta(hours=1) < Export.objects.get().expires_at <= timezone.now() + timedelta(hours=2)


def test_partial_files_left_by_a_killed_worker_are_deleted_once_older_than_the_time_to_live(db, export_dir, settings):
    settings.EXPORT_TTL_HOURS = 1
    export_dir.mkdir(parents=True)
    stale, fresh, done = export_dir / ".7.csv.123.partial", export_dir / ".8.csv.123.partial", export_dir / "9.csv"
    for path in (stale, fresh, done):
        path.write_bytes(b"time,open\n")
    two_hours_ago = (timezone.now() - timedelta(hours=2)).timestamp()
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(done, (two_hours_ago, two_hours_ago))

    services.delete_expired_exports(timezone.now())

    assert sorted(path.name for path in export_dir.iterdir()) == [".8.csv.123.partial", "9.csv"]


def test_users_see_only_their_own_exports(client, make_user, series, export_dir):
    other = make_user("analyst")
    theirs = services.create_export(other, series, "1m", None, None, "csv", now=timezone.now())
    mine = services.create_export(client_user(client), series, "1m", None, None, "json", now=timezone.now())
    run_export_task(theirs.pk)

    listed = client.get(JOBS).json()["results"]

    assert [item["id"] for item in listed] == [mine.pk]
    for method, path in (("get", ""), ("get", "download/"), ("delete", "")):
        assert getattr(client, method)(f"{JOBS}{theirs.pk}/{path}").status_code == 404
    assert Export.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"instrument": 999999}, "instrument", "no instrument with id 999999"),
        ({"format": "xlsx"}, "format", None),
        ({"timeframe": "2m"}, "timeframe", None),
        ({"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, "end", "end must be after start"),
    ],
)
def test_a_bad_export_request_is_refused_naming_the_field(client, series, body, field, message):
    response = client.post(JOBS, {"instrument": series.pk} | body, content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]
    if message:
        assert response.json()["error"]["fields"][field] == [message]
    assert not Export.objects.exists()


# --- Under ASGI ------------------------------------------------------------------------------------


def test_under_asgi_a_streamed_body_is_made_piece_by_piece_while_it_is_sent():
    made: list[int] = []

    def pieces() -> Iterator[bytes]:
        for number in range(5):
            made.append(number)
            yield b"piece %d\n" % number

    async def first_two(response: Any) -> list[bytes]:
        body = aiter(response)
        return [await anext(body), await anext(body)]

    sent = asyncio.run(first_two(StreamingExportResponse(pieces(), content_type="text/csv")))

    assert sent == [b"piece 0\n", b"piece 1\n"]
    assert made == [0, 1]  # Django's own StreamingHttpResponse would have made all five first


# --- Admin and schedule ----------------------------------------------------------------------------


def test_the_admin_lists_exports_filtered_by_status_and_found_by_symbol(make_user, analyst, series):
    done = services.create_export(analyst, series, "1m", None, None, "csv", now=timezone.now())
    run_export_task(done.pk)
    pending = services.create_export(analyst, series, "5m", None, None, "json", now=timezone.now())
    admin = make_user(username="root")
    admin.is_staff = admin.is_superuser = True
    admin.save()

    page = logged_in(admin).get("/admin/exports/export/", {"status__exact": "done", "q": "UNITTEST"})

    assert page.status_code == 200
    shown = [export.pk for export in page.context["cl"].result_list]
    assert shown == [done.pk] != [pending.pk]


def test_beat_deletes_expired_exports_with_a_registered_task(settings):
    from cryptostock.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["exports-delete-expired"]

    app.loader.import_default_modules()
    assert entry["task"] == "exports.tasks.delete_expired_exports_task"
    assert entry["task"] in app.tasks
