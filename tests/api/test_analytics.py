"""Workspace analytics: local-date buckets, every day present, totals, degraded replies, tokens."""

import pytest

from tests.analytics_data import ZONE, local, seed
from tests.factories import auth_headers, make_user, make_workspace


def test_local_days_totals_and_series(client):
    workspace = make_workspace(timezone=ZONE)
    seed(workspace)
    response = client.get(
        f"/api/v1/workspaces/{workspace.id}/analytics?days=7", headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 200, response.json
    body = response.json
    series = body["series"]
    assert body["timezone"] == ZONE and body["days"] == 7
    assert [d["date"] for d in series] == [local(i, 12).date().isoformat() for i in range(-6, 1)]
    assert (body["start_date"], body["end_date"]) == (series[0]["date"], series[-1]["date"])
    assert series[-2] == {
        "date": local(-1, 12).date().isoformat(),
        "conversations": 1,
        "visitor_messages": 1,
        "assistant_replies": 1,
        "degraded_replies": 1,
        "human_time_saved_minutes": 4,
        "tokens_used": 100,
    }
    assert series[-1] == {
        "date": local(0, 12).date().isoformat(),
        "conversations": 1,
        "visitor_messages": 1,
        "assistant_replies": 2,
        "degraded_replies": 1,
        "human_time_saved_minutes": 6,
        "tokens_used": 15,
    }
    assert all(not any(v for k, v in day.items() if k != "date") for day in series[:-2])
    assert body["totals"] == {
        "conversations": 2,
        "visitor_messages": 2,
        "assistant_replies": 3,
        "degraded_replies": 2,
        "human_time_saved_minutes": 10,
        "tokens_used": 115,
    }


def test_same_data_in_another_time_zone_moves_between_days(client):
    workspace = make_workspace(timezone="Asia/Tokyo")
    seed(workspace)
    body = client.get(
        f"/api/v1/workspaces/{workspace.id}/analytics?days=7", headers=auth_headers(workspace.owner)
    ).json
    # Yesterday 23:30 in Los Angeles is already today's afternoon in Tokyo, like 00:30:
    # the two conversations that were a day apart share a Tokyo date.
    by_day = {d["date"]: d["conversations"] for d in body["series"]}
    assert by_day[local(0, 12).date().isoformat()] == 2
    assert by_day.get(local(-1, 12).date().isoformat(), 0) == 0


def test_default_is_30_days_and_empty_days_are_zero(client):
    workspace = make_workspace()
    body = client.get(
        f"/api/v1/workspaces/{workspace.id}/analytics", headers=auth_headers(workspace.owner)
    ).json
    assert len(body["series"]) == 30 and body["days"] == 30
    assert set(body["totals"].values()) == {0}


@pytest.mark.parametrize("days", ["0", "366", "-1", "week"])
def test_days_out_of_range_is_422(client, days):
    workspace = make_workspace()
    response = client.get(
        f"/api/v1/workspaces/{workspace.id}/analytics?days={days}", headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 422 and "days" in response.json["errors"]


def test_access(client):
    workspace = make_workspace()
    url = f"/api/v1/workspaces/{workspace.id}/analytics?days=365"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=auth_headers(make_user())).json == {"detail": "Not your workspace"}
    assert client.get(url, headers=auth_headers(make_user(is_superuser=True))).status_code == 200
