"""The SQLite fallback of analytics gives the same numbers as the PostgreSQL aggregates."""

from backend.services import analytics
from tests.analytics_data import ZONE, seed
from tests.factories import make_workspace


def test_python_fallback_matches_sql(monkeypatch):
    workspace = make_workspace(timezone=ZONE)
    seed(workspace)
    from_sql = analytics.workspace_analytics(workspace, 7)

    monkeypatch.setattr(analytics, "sql_aggregates_available", lambda: False)
    from_python = analytics.workspace_analytics(workspace, 7)
    assert from_python == from_sql
    assert from_sql["totals"]["tokens_used"] == 115
