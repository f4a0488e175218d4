"""Configuration: guessable secrets are refused outside an explicit local/test environment,
and a local machine without a key gets a generated one, kept under instance/."""

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import jwt as pyjwt
import pytest

from backend import create_app
from backend.config import (
    DEFAULT_SECRET_KEY,
    DEFAULT_SUPERUSER_PASSWORD,
    GENERATE_KEY_COMMAND,
    Config,
    TestConfig,
    normalize_database_url,
    secret_key_problem,
)
from tests.factories import DEFAULT_PASSWORD, make_user
from tests.helpers import build_app

ROOT = Path(__file__).resolve().parent.parent


def _config(**attrs) -> type[Config]:
    return type("CustomConfig", (TestConfig,), attrs)


STRONG_KEY = "a-long-random-value-from-the-environment"
STRONG_PASSWORD = "a-strong-first-superuser-password"


@pytest.mark.parametrize("environment", ["production", "staging", "Local"])
@pytest.mark.parametrize(
    "key,reason",
    [
        (None, "SECRET_KEY is not set"),
        (DEFAULT_SECRET_KEY, 'SECRET_KEY is "changethis", a well-known value'),
        ("secret", "a well-known value"),
        ("Your-Secret-Key", "a well-known value"),
        ("x" * 31, "shorter than 32 bytes"),
    ],
)
def test_a_guessable_secret_key_is_refused_outside_local(environment, key, reason):
    config = _config(ENVIRONMENT=environment, SECRET_KEY=key, FIRST_SUPERUSER_PASSWORD=STRONG_PASSWORD)
    with pytest.raises(RuntimeError) as refused:
        config().check()
    message = str(refused.value)
    assert f"ENVIRONMENT={environment}" in message and reason in message
    assert GENERATE_KEY_COMMAND in message and "ENVIRONMENT=local" in message
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(config)


@pytest.mark.parametrize("password", [DEFAULT_SUPERUSER_PASSWORD, "ChangeThis", "changeme"])
def test_a_default_superuser_password_is_refused_outside_local(password):
    config = _config(ENVIRONMENT="production", SECRET_KEY=STRONG_KEY, FIRST_SUPERUSER_PASSWORD=password)
    with pytest.raises(RuntimeError, match="FIRST_SUPERUSER_PASSWORD is a well-known value"):
        config().check()


def test_production_with_a_real_key_and_password_starts():
    config = _config(
        ENVIRONMENT="production", SECRET_KEY=STRONG_KEY, FIRST_SUPERUSER_PASSWORD=STRONG_PASSWORD
    )
    settings = config()
    settings.check()
    assert settings.SECRET_KEY == STRONG_KEY


@pytest.mark.parametrize("key", [None, DEFAULT_SECRET_KEY, "secret"])
def test_local_without_a_real_key_generates_one_and_keeps_it(tmp_path, key):
    key_file = tmp_path / "instance" / "secret_key"
    config = _config(ENVIRONMENT="local", SECRET_KEY=key, SECRET_KEY_FILE=key_file)
    first = config()
    first.check()
    assert first.SECRET_KEY != key and secret_key_problem(first.SECRET_KEY) is None
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first.SECRET_KEY
    again = config()  # a restart: the same key, so tokens stay valid
    again.check()
    assert again.SECRET_KEY == first.SECRET_KEY


def test_a_kept_local_key_readable_by_others_is_made_private(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("k" * 64 + "\n")
    key_file.chmod(0o644)
    settings = _config(ENVIRONMENT="local", SECRET_KEY=None, SECRET_KEY_FILE=key_file)()
    settings.check()
    assert settings.SECRET_KEY == "k" * 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_an_unusable_kept_key_is_refused(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("short\n")
    with pytest.raises(RuntimeError, match="holds no usable key"):
        _config(ENVIRONMENT="local", SECRET_KEY=None, SECRET_KEY_FILE=key_file)().check()


def test_processes_starting_together_agree_on_one_local_key(tmp_path):
    key_file = tmp_path / "secret_key"
    code = "import sys; from pathlib import Path; from backend.config import local_secret_key; "
    code += "print(local_secret_key(Path(sys.argv[1])))"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(key_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert keys == {key_file.read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary files left


def test_test_environment_without_a_real_key_gets_a_random_one():
    first, second = _config(SECRET_KEY=None)(), _config(SECRET_KEY=DEFAULT_SECRET_KEY)()
    first.check()
    second.check()
    assert secret_key_problem(first.SECRET_KEY) is None and first.SECRET_KEY != second.SECRET_KEY
    kept = _config()()
    kept.check()
    assert kept.SECRET_KEY == TestConfig.SECRET_KEY


def test_a_token_signed_with_the_default_key_is_refused_in_local_mode(app, tmp_path):
    admin = make_user(is_superuser=True)
    forged = pyjwt.encode(
        {"sub": str(admin.id), "type": "access", "fresh": False, "ver": admin.token_version,
         "iat": int(time.time()), "exp": int(time.time()) + 3600},
        DEFAULT_SECRET_KEY,
        algorithm="HS256",
    )  # fmt: skip
    with build_app(
        app, ENVIRONMENT="local", SECRET_KEY=DEFAULT_SECRET_KEY, SECRET_KEY_FILE=tmp_path / "secret_key"
    ) as local:
        assert local.config["SECRET_KEY"] != DEFAULT_SECRET_KEY
        with local.app_context():
            client = local.test_client()
            response = client.get("/api/v1/users/", headers={"Authorization": f"Bearer {forged}"})
            assert response.status_code == 403
            assert response.get_json() == {"detail": "Could not validate credentials"}
            genuine = client.post(
                "/api/v1/login/access-token", data={"username": admin.email, "password": DEFAULT_PASSWORD}
            ).get_json()["access_token"]
            response = client.get("/api/v1/users/", headers={"Authorization": f"Bearer {genuine}"})
            assert response.status_code == 200


def _start(**environment) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "ENVIRONMENT", "FIRST_SUPERUSER_PASSWORD")
    }
    env.update({"DATABASE_URL": "sqlite:///:memory:", **environment})
    return subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_production_process_without_secret_key_exits_with_the_reason():
    result = _start(ENVIRONMENT="production", FIRST_SUPERUSER_PASSWORD=STRONG_PASSWORD)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr and "ENVIRONMENT=production" in result.stderr
    assert GENERATE_KEY_COMMAND in result.stderr


@pytest.mark.parametrize(
    "environment", [{}, {"ENVIRONMENT": ""}, {"ENVIRONMENT": "production", "SECRET_KEY": "x"}]
)
def test_a_process_without_an_explicit_local_environment_refuses_default_secrets(environment):
    # Unset or empty ENVIRONMENT is a deployment: nothing falls back to "changethis".
    result = _start(**environment)
    assert result.returncode != 0
    assert "Refusing to start with ENVIRONMENT=production" in result.stderr
    assert "SECRET_KEY" in result.stderr and "FIRST_SUPERUSER_PASSWORD" in result.stderr


def test_a_production_process_with_real_secrets_starts(tmp_path):
    result = _start(
        ENVIRONMENT="production",
        SECRET_KEY=STRONG_KEY,
        FIRST_SUPERUSER_PASSWORD=STRONG_PASSWORD,
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "url,expected",
    [
        ("postgres://u@h:5432/db", "postgresql+psycopg2://u@h:5432/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg2://u@h:5432/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_normalisation(url, expected):
    assert normalize_database_url(url) == expected


def test_token_lifetimes():
    assert Config.ACCESS_TOKEN_EXPIRE.total_seconds() == 8 * 24 * 3600
    assert Config.EMAIL_RESET_TOKEN_EXPIRE.total_seconds() == 48 * 3600
