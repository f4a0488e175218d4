"""Configuration: the default SECRET_KEY is refused outside local and test."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import create_app
from backend.config import DEFAULT_SECRET_KEY, Config, TestConfig, normalize_database_url

ROOT = Path(__file__).resolve().parent.parent


def _config(**attrs) -> type[Config]:
    return type("CustomConfig", (TestConfig,), attrs)


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_default_secret_key_is_refused_outside_local(environment):
    config = _config(ENVIRONMENT=environment, SECRET_KEY=DEFAULT_SECRET_KEY)
    with pytest.raises(RuntimeError, match=r"SECRET_KEY .* set SECRET_KEY to a long random value"):
        config().check()
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(config)


@pytest.mark.parametrize("environment", ["local", "test"])
def test_default_secret_key_is_allowed_locally(environment):
    _config(ENVIRONMENT=environment, SECRET_KEY=DEFAULT_SECRET_KEY)().check()


def test_production_with_a_real_key_starts():
    _config(ENVIRONMENT="production", SECRET_KEY="a-long-random-value-from-the-environment")().check()


def test_a_production_process_without_secret_key_exits_with_the_reason():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(ENVIRONMENT="production", DATABASE_URL="sqlite:///:memory:")
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr and "ENVIRONMENT=production" in result.stderr


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
