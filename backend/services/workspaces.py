"""Workspaces: one per owner, globally unique handles, the auto-created default,
and the guard that keeps a workspace with content from being deleted."""

import re
import uuid
from types import SimpleNamespace

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError

from backend.auth import check_workspace_access
from backend.errors import BadRequest, Conflict, not_found
from backend.extensions import db
from backend.models import Conversation, SchedulingConnector, User, Workspace, WorkspaceService
from backend.rules.folding import to_ascii
from backend.rules.handles import HANDLE_MAX, HANDLE_MIN, RESERVED_HANDLES
from backend.rules.tones import DEFAULT_TONE
from backend.services import media
from backend.services.pagination import page

DEFAULTS = {"name": "My Workspace", "type": "individual", "tone": DEFAULT_TONE, "timezone": "UTC"}
# Room for a "-<n>" collision suffix inside the 63-character limit.
_BASE_MAX = HANDLE_MAX - 6
_CREATE_ATTEMPTS = 5


def parse_id(value: uuid.UUID | str, thing: str) -> uuid.UUID:
    """A path id as a UUID; anything else cannot name a row, so it is `<thing> not found`."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise not_found(thing) from exc


def get_workspace(workspace_id: uuid.UUID | str) -> Workspace:
    workspace = db.session.get(Workspace, parse_id(workspace_id, "Workspace"))
    if workspace is None:
        raise not_found("Workspace")
    return workspace


def get_accessible_workspace(user: User, workspace_id: uuid.UUID | str) -> Workspace:
    """The workspace, if `user` owns it or is a superuser (404, then 403)."""
    workspace = get_workspace(workspace_id)
    check_workspace_access(user, workspace)
    return workspace


def get_owned(user: User, model, object_id: uuid.UUID | str, thing: str):
    """A row of a workspace-scoped `model` (404 "<thing> not found"), checked against its
    workspace's owner in the same query (403 "Not your workspace")."""
    row = db.session.execute(
        select(model, Workspace.owner_id)
        .join(Workspace, Workspace.id == model.workspace_id)
        .where(model.id == parse_id(object_id, thing))
    ).first()
    if row is None:
        raise not_found(thing)
    check_owner(user, row[1])
    return row[0]


def check_owner(user: User, owner_id: uuid.UUID) -> None:
    """check_workspace_access() for a workspace known only by its owner's id."""
    check_workspace_access(user, SimpleNamespace(owner_id=owner_id))


def list_workspaces(skip: int, limit: int) -> tuple[list[Workspace], int]:
    return page(Workspace, [], [Workspace.created_at, Workspace.id], skip, limit)


def _by_owner(owner_id: uuid.UUID) -> Workspace | None:
    return db.session.scalars(select(Workspace).where(Workspace.owner_id == owner_id)).first()


def _handle_taken(handle: str, except_id: uuid.UUID | None = None) -> bool:
    query = select(Workspace.id).where(Workspace.handle == handle)
    if except_id is not None:
        query = query.where(Workspace.id != except_id)
    return db.session.execute(query.limit(1)).first() is not None


def handle_base_from_email(email: str) -> str:
    """`jane.doe+x@example.com` -> `jane-doe-x`; short bases are padded to 3 characters."""
    local = email.split("@", 1)[0]
    ascii_text = to_ascii(local)
    base = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    base = base[:_BASE_MAX].rstrip("-") or "owner"
    return base + "0" * max(0, HANDLE_MIN - len(base))


def first_free_handle(base: str) -> str:
    """`base` itself, else `base-2`, `base-3`... skipping taken and reserved handles."""
    taken = set(
        db.session.scalars(
            select(Workspace.handle).where(or_(Workspace.handle == base, Workspace.handle.like(f"{base}-%")))
        )
    )
    taken |= RESERVED_HANDLES
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def get_or_create_for_user(user: User) -> Workspace:
    """The user's workspace, created with the defaults on first use (race-safe)."""
    workspace = _by_owner(user.id)
    if workspace is not None:
        return workspace
    return _insert(user.id, user.email, DEFAULTS, handle=None, existing_is_ok=True)


def create_workspace(user: User, data: dict) -> Workspace:
    if _by_owner(user.id) is not None:
        raise Conflict("User already has a workspace")
    handle = data.pop("handle", None)
    if handle is not None and _handle_taken(handle):
        raise Conflict(f"Handle '{handle}' is already taken")
    return _insert(user.id, user.email, {**DEFAULTS, **data}, handle=handle, existing_is_ok=False)


def _insert(owner_id: uuid.UUID, email: str, values: dict, *, handle: str | None, existing_is_ok: bool):
    """INSERTs the workspace; the unique indexes decide races.

    A concurrent INSERT for the same owner makes ours fail on owner_id: the
    winner's row is returned (`me`) or it is a 409. A handle taken meanwhile is
    a 409 when the caller chose it; a derived one is derived again (`-2`, `-3`...).
    """
    base = handle_base_from_email(email)
    for _ in range(_CREATE_ATTEMPTS):
        workspace = Workspace(owner_id=owner_id, handle=handle or first_free_handle(base), **values)
        db.session.add(workspace)
        try:
            db.session.commit()
            return workspace
        except IntegrityError as exc:
            db.session.rollback()
            existing = _by_owner(owner_id)
            if existing is not None:
                if existing_is_ok:
                    return existing
                raise Conflict("User already has a workspace") from exc
            if handle is not None:
                raise Conflict(f"Handle '{handle}' is already taken") from exc
    raise Conflict("Could not allocate a workspace handle, please retry")


def set_profile_image(workspace: Workspace, upload) -> Workspace:
    """Stores an uploaded image as the workspace's profile image; the previous one is deleted."""
    return media.replace_image(workspace, "profile_image_url", "workspaces", upload, "image")


def update_workspace(workspace: Workspace, data: dict) -> Workspace:
    previous_image = workspace.profile_image_url
    handle = data.get("handle")
    if handle is not None and handle != workspace.handle and _handle_taken(handle, workspace.id):
        raise Conflict(f"Handle '{handle}' is already taken")
    for key, value in data.items():
        setattr(workspace, key, value)
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(f"Handle '{handle}' is already taken") from exc
    if workspace.profile_image_url != previous_image:
        media.delete_url(previous_image, "workspaces", workspace.id)  # replaced by a link, or cleared
    return workspace


def _content_counts(workspace_id: uuid.UUID) -> dict[str, bool]:
    def has(model) -> bool:
        return bool(db.session.scalar(select(exists().where(model.workspace_id == workspace_id))))

    return {
        "services": has(WorkspaceService),
        "connectors": has(SchedulingConnector),
        "conversations": has(Conversation),
    }


def delete_workspace(workspace: Workspace) -> None:
    """Deletes an empty workspace; one with content is refused, so nothing goes by accident."""
    present = [name for name, found in _content_counts(workspace.id).items() if found]
    if present:
        raise BadRequest(
            "Workspace still has " + ", ".join(present) + ": delete them before deleting the workspace"
        )
    image, workspace_id = workspace.profile_image_url, workspace.id
    db.session.delete(workspace)
    db.session.commit()
    media.delete_url(image, "workspaces", workspace_id)
