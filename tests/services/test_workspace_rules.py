"""Handle rules of services.workspaces and schemas.workspace, without HTTP."""

import pytest

from backend.errors import NotFound
from backend.rules.handles import handle_problem
from backend.services.workspaces import first_free_handle, handle_base_from_email, parse_id
from tests.factories import make_workspace


@pytest.mark.parametrize(
    "email,base",
    [
        ("jane.doe+x@example.com", "jane-doe-x"),
        ("JANE__DOE@example.com", "jane-doe"),
        ("-.-jane-.-@example.com", "jane"),
        ("çà@example.com", "ca0"),
        ("日本@example.com", "owner"),
        ("a-" * 40 + "@example.com", ("a-" * 40)[:57].rstrip("-")),
    ],
)
def test_base_from_email_is_always_a_valid_handle(email, base):
    assert handle_base_from_email(email) == base
    assert handle_problem(base) is None


def test_first_free_handle_skips_taken_and_reserved():
    assert first_free_handle("docs") == "docs-2"
    make_workspace(handle="lee")
    make_workspace(handle="lee-2")
    make_workspace(handle="lee-4")
    assert first_free_handle("lee") == "lee-3"
    assert first_free_handle("leo") == "leo"


def test_parse_id():
    assert str(parse_id("00000000-0000-0000-0000-000000000001", "Thing")).endswith("1")
    with pytest.raises(NotFound, match="Thing not found"):
        parse_id("nope", "Thing")
