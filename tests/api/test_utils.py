"""Health check, and the API docs (Swagger UI served without internet)."""

import re

from tests.helpers import build_app

HEALTH = "/api/v1/utils/health-check/"


def test_health_check_ok(client):
    response = client.get(HEALTH)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_health_check_503_when_redis_is_down(app):
    with build_app(app, REDIS_URL="redis://127.0.0.1:6390/0") as broken:
        response = broken.test_client().get(HEALTH)
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] == "ok" and body["redis"] == "error" and body["status"] == "error"
    assert "redis" in body["detail"]


def test_health_check_503_when_database_is_down(app):
    with build_app(
        app, SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://postgres@127.0.0.1:5439/none"
    ) as broken:
        response = broken.test_client().get(HEALTH)
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] == "error" and body["redis"] == "ok"
    assert "database" in body["detail"]


def test_health_check_is_fine_again_for_the_session_app(client):
    # build_app() put the process-wide Redis client back.
    assert client.get(HEALTH).get_json()["redis"] == "ok"


def test_swagger_ui_renders_from_local_assets(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assets = re.findall(r'(?:href|src)="([^"]+\.(?:css|js))"', page)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert asset.startswith("/api/v1/static/swagger-ui/"), f"{asset} is not served by the app"
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.get_data()) > 1000
    assert "/api/v1/openapi.json" in page


def test_openapi_document_lists_the_paths(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    for path in [
        "/api/v1/login/access-token",
        "/api/v1/login/test-token",
        "/api/v1/password-recovery/{email}",
        "/api/v1/reset-password/",
        "/api/v1/users/",
        "/api/v1/users/me",
        "/api/v1/users/me/password",
        "/api/v1/users/signup",
        "/api/v1/users/{user_id}",
        "/api/v1/utils/health-check/",
    ]:
        assert path in spec["paths"], path
    assert spec["paths"]["/api/v1/users/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in spec["paths"]["/api/v1/users/signup"]["post"]
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    assert set(spec["paths"]["/api/v1/users/signup"]["post"]["responses"]) >= {"201"}


def test_unknown_swagger_asset_is_json_404(client):
    response = client.get("/api/v1/static/swagger-ui/nope.js")
    assert response.status_code == 404 and response.get_json() == {"detail": "Not found"}
