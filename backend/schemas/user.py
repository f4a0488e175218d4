"""User schemas: sign-up, creation and updates, passwords, tokens, and the public user."""

from marshmallow import Schema, ValidationError, fields, pre_load, validates
from marshmallow.validate import Length

from backend.rules.identity import email_problem, normalize_email
from backend.rules.links import link_problem
from backend.rules.passwords import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from backend.schemas.common import BaseSchema, page_schema

PASSWORD = Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_LENGTH)
HTTP_SCHEMES = {"http", "https"}
MAX_SOCIAL_LINKS = 20
# No cap of its own beyond the request limit (1 MiB), like the workspace's knowledge base.
MAX_LONG_TEXT = 1024 * 1024


def _text(max_length: int, **kwargs) -> fields.String:
    return fields.String(allow_none=True, validate=Length(max=max_length), **kwargs)


class EmailAddress(fields.Email):
    """An address in its normalised form (backend/rules/identity.py); the checks see that form."""

    def _deserialize(self, value, attr, data, **kwargs):
        return normalize_email(super()._deserialize(value, attr, data, **kwargs))


def one_script(value: str) -> None:
    problem = email_problem(value)
    if problem:
        raise ValidationError(problem)


def visitor_link(value: str | None) -> None:
    """Links visitors see must lead to a public host and read as what they are (backend/rules/links.py)."""
    problem = value and link_problem(value)
    if problem:
        raise ValidationError(f"Link {problem}.")


def _email(**kwargs) -> fields.Email:
    return EmailAddress(validate=[Length(max=255), one_script], **kwargs)


def _password(**kwargs) -> fields.String:
    return fields.String(validate=PASSWORD, load_only=True, **kwargs)


class ProfileFieldsSchema(BaseSchema):
    """The profile an owner edits; all optional, `null` clears a field."""

    full_name = _text(255)
    business_name = _text(255)
    tagline = _text(255)
    bio = _text(10_000)
    phone = _text(64)
    website = fields.Url(allow_none=True, schemes=HTTP_SCHEMES, validate=[Length(max=2048), visitor_link])
    social_links = fields.Dict(
        keys=fields.String(validate=Length(min=1, max=50)),
        values=fields.Url(schemes=HTTP_SCHEMES, validate=[Length(max=2048), visitor_link]),
        allow_none=True,
    )
    setup_completed = fields.Boolean()
    # The setup wizard's profile; `about` and `faqs` also feed the agent's prompt.
    name = _text(255)
    about = _text(MAX_LONG_TEXT)
    profile_type = _text(50)
    faqs = _text(MAX_LONG_TEXT)

    @pre_load
    def _blank_website_is_none(self, data, **_kwargs):
        # Forms send "" for an emptied input; treat it as clearing the field.
        if isinstance(data, dict) and data.get("website") == "":
            data = {**data, "website": None}
        return data

    @validates("social_links")
    def _limit_social_links(self, value, **_kwargs):
        if value is not None and len(value) > MAX_SOCIAL_LINKS:
            raise ValidationError(f"At most {MAX_SOCIAL_LINKS} links.")


class UserRegisterSchema(BaseSchema):
    email = _email(required=True)
    password = _password(required=True)
    full_name = _text(255)


class UserCreateSchema(ProfileFieldsSchema):
    """What a superuser may set when creating a user. Without `password`, the user is
    emailed a link to choose one (an invitation)."""

    email = _email(required=True)
    password = _password(
        metadata={"description": "Leave out to invite: the user gets an email to set a password."}
    )
    is_active = fields.Boolean(load_default=True)
    is_superuser = fields.Boolean(load_default=False)


class PrivateUserCreateSchema(BaseSchema):
    """POST /private/users/ (ENVIRONMENT=local only)."""

    email = _email(required=True)
    full_name = _text(255)
    password = _password()


class UserUpdateMeSchema(ProfileFieldsSchema):
    email = _email()


class UserUpdateSchema(ProfileFieldsSchema):
    """What a superuser may change on any user."""

    email = _email()
    password = _password()
    is_active = fields.Boolean()
    is_superuser = fields.Boolean()


class TestEmailArgsSchema(BaseSchema):
    email_to = _email(required=True)


class UpdatePasswordSchema(BaseSchema):
    current_password = _password(required=True)
    new_password = _password(required=True)


class NewPasswordSchema(BaseSchema):
    token = fields.String(required=True, validate=Length(min=1, max=4096))
    new_password = _password(required=True)


class LoginFormSchema(BaseSchema):
    """The OAuth2 password form; grant_type, scope and client fields are ignored."""

    username = fields.String(required=True, validate=Length(max=255))
    password = fields.String(required=True, validate=Length(max=PASSWORD_MAX_LENGTH), load_only=True)


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True)


class UserPublicSchema(Schema):
    id = fields.UUID(required=True)
    email = fields.String(required=True)
    full_name = fields.String(allow_none=True)
    is_active = fields.Boolean()
    is_superuser = fields.Boolean()
    business_name = fields.String(allow_none=True)
    tagline = fields.String(allow_none=True)
    bio = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    website = fields.String(allow_none=True)
    social_links = fields.Dict(keys=fields.String(), values=fields.String())
    setup_completed = fields.Boolean()
    name = fields.String(allow_none=True)
    about = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True, metadata={"description": "set by POST /users/me/avatar"})
    profile_type = fields.String(allow_none=True)
    faqs = fields.String(allow_none=True)


UsersPublicSchema = page_schema(UserPublicSchema, "UsersPublicSchema")
