"""Password hashes are argon2id at the cost the app's config names: argon2-cffi's defaults
unless configured, the cheapest parameters in tests; a hash verifies whatever the cost now."""

from argon2 import PasswordHasher, extract_parameters

from backend.config import Config, TestConfig
from backend.security import hash_password, verify_password


def test_config_defaults_are_argon2_cffis_defaults():
    library = PasswordHasher()
    assert (Config.PASSWORD_HASH_TIME_COST, Config.PASSWORD_HASH_MEMORY_COST) == (
        library.time_cost,
        library.memory_cost,
    )
    assert Config.PASSWORD_HASH_PARALLELISM == library.parallelism
    assert (TestConfig.PASSWORD_HASH_TIME_COST, TestConfig.PASSWORD_HASH_MEMORY_COST) == (1, 8)


def test_tests_hash_at_the_low_cost():
    hashed = hash_password("a-long-password")
    assert hashed.startswith("$argon2id$")
    params = extract_parameters(hashed)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (1, 8, 1)
    assert verify_password("a-long-password", hashed)
    assert not verify_password("another-password", hashed)


def test_the_configured_cost_is_used_and_either_cost_verifies(app, monkeypatch):
    cheap = hash_password("a-long-password")
    for name in ("PASSWORD_HASH_TIME_COST", "PASSWORD_HASH_MEMORY_COST", "PASSWORD_HASH_PARALLELISM"):
        monkeypatch.setitem(app.config, name, getattr(Config, name))
    costly = hash_password("a-long-password")
    params = extract_parameters(costly)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        Config.PASSWORD_HASH_TIME_COST,
        Config.PASSWORD_HASH_MEMORY_COST,
        Config.PASSWORD_HASH_PARALLELISM,
    )
    # A hash carries its own parameters: changing the cost locks nobody out.
    assert verify_password("a-long-password", cheap) and verify_password("a-long-password", costly)
    assert not verify_password("wrong-password", costly)
