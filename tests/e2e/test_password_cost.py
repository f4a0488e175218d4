"""The processes the e2e tests start hash passwords at the tests' low argon2 cost (passed
through their environment), and a password set through one process logs in through it."""

import requests
from argon2 import extract_parameters

from backend.config import TestConfig
from backend.extensions import db
from backend.models import User


def test_the_web_process_hashes_at_the_configured_cost(stack):
    signup = requests.post(
        stack.api("/users/signup"),
        json={"email": "cost@example.com", "password": "a-long-password", "full_name": "Cost"},
        timeout=10,
    )
    assert signup.status_code == 201, signup.text
    hashed = db.session.scalars(db.select(User.hashed_password).where(User.email == "cost@example.com")).one()
    params = extract_parameters(hashed)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        TestConfig.PASSWORD_HASH_TIME_COST,
        TestConfig.PASSWORD_HASH_MEMORY_COST,
        TestConfig.PASSWORD_HASH_PARALLELISM,
    )
    login = requests.post(
        stack.api("/login/access-token"),
        data={"username": "cost@example.com", "password": "a-long-password"},
        timeout=10,
    )
    assert login.status_code == 200 and login.json()["access_token"]
