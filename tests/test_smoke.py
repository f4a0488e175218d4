from tests.factories import make_user


def test_unknown_path_is_json_404(client):
    response = client.get("/definitely/not/here")
    assert response.status_code == 404
    assert response.json == {"detail": "Not found"}


def test_schema_built_by_migrations(client):
    user = make_user()
    assert user.id is not None and user.created_at.tzinfo is not None
