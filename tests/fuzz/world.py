"""The data the fuzz tests run against: a superuser, an owner with a workspace full of
objects, another user for the superuser's user routes, and a public conversation with its
visitor token and a run. Ids are fixed for a test, and `restore()` puts back whatever a
fuzzed request deleted or switched off (same ids, same credentials), so later requests
still find real objects."""

import uuid
import zlib
from dataclasses import dataclass, field

from sqlalchemy import delete, select, text, update

from backend.auth import issue_access_token
from backend.extensions import db
from backend.models import (
    AgentRun,
    Conversation,
    ConversationMessage,
    PushToken,
    SchedulingConnector,
    User,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
    Workspace,
    WorkspaceService,
)
from backend.security import hash_password
from backend.services import chat

PASSWORD = "fuzz-password-1234"
HANDLE = "fuzz-shop"
OTHER_HANDLE = "fuzz-other"


def transaction_snapshot() -> str:
    """PostgreSQL's current snapshot (xmin:xmax:ids in progress). Every transaction that
    writes is given a transaction id, which moves it; transactions that only read leave it
    as it was. So an unchanged snapshot means nothing was written in between."""
    db.session.rollback()
    snapshot = db.session.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()
    db.session.rollback()
    return snapshot


def _ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


@dataclass
class World:
    superuser_id: uuid.UUID = field(default_factory=uuid.uuid4)
    owner_id: uuid.UUID = field(default_factory=uuid.uuid4)
    other_id: uuid.UUID = field(default_factory=uuid.uuid4)
    workspace_id: uuid.UUID = field(default_factory=uuid.uuid4)
    other_workspace_id: uuid.UUID = field(default_factory=uuid.uuid4)
    service_ids: list = field(default_factory=lambda: _ids(3))
    connector_ids: list = field(default_factory=lambda: _ids(2))
    conversation_ids: list = field(default_factory=lambda: _ids(2))
    public_conversation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    message_ids: list = field(default_factory=lambda: _ids(3))
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    webhook_id: uuid.UUID = field(default_factory=uuid.uuid4)
    webhook_event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    delivery_id: uuid.UUID = field(default_factory=uuid.uuid4)
    push_token_id: uuid.UUID = field(default_factory=uuid.uuid4)
    push_token: str = "ExponentPushToken[fuzz-owner-phone]"
    visitor_token: str = ""
    _visitor_token_hash: str = ""
    # Bumped by every restore: a write may have re-created a user or revoked its tokens (a
    # password set by a superuser), so tokens are issued again after it.
    generation: int = 0
    _tokens: dict = field(default_factory=dict)
    _hash: str = ""
    # The snapshot just after the last restore: while it holds, there is nothing to put back.
    _restored_at: str = ""

    @property
    def emails(self) -> dict:
        return {
            self.superuser_id: "fuzz-admin@example.com",
            self.owner_id: "fuzz-owner@example.com",
            self.other_id: "fuzz-other@example.com",
        }

    def build(self) -> "World":
        self._hash = hash_password(PASSWORD)
        self._users()
        self._workspaces()
        # The public conversation is started the way a visitor starts one; its token hash is
        # kept to re-create it with the same token.
        conversation, self.visitor_token = chat.start_conversation(HANDLE, "Fuzz visitor")
        self.public_conversation_id = conversation.id
        self._visitor_token_hash = conversation.visitor_token_hash
        self.restore()
        return self

    # --- what a fuzzed request may use -------------------------------------------------------

    def path_ids(self, role: str) -> dict[str, list[str]]:
        """Real values per path parameter name, for the role's requests."""
        ids = {
            "workspace_id": [self.workspace_id],
            "service_id": self.service_ids,
            "connector_id": self.connector_ids,
            "conversation_id": [*self.conversation_ids, self.public_conversation_id],
            "message_id": self.message_ids,
            "user_id": [self.owner_id],
            "run_id": [self.run_id],
            "webhook_id": [self.webhook_id],
            "delivery_id": [self.delivery_id],
            "token": [self.push_token],
            "handle": [HANDLE],
            "email": [self.emails[self.owner_id]],
        }
        if role == "superuser":
            # Never its own id: a superuser could demote or deactivate itself.
            ids["user_id"] = [self.other_id, self.owner_id]
            ids["workspace_id"] = [self.workspace_id, self.other_workspace_id]
        if role == "visitor":
            ids["conversation_id"] = [self.public_conversation_id]
        return {name: [str(value) for value in values] for name, values in ids.items()}

    def token(self, role: str) -> str:
        user_id = {"owner": self.owner_id, "superuser": self.superuser_id}[role]
        key = (role, self.generation)
        if key not in self._tokens:
            self._tokens[key] = issue_access_token(db.session.get(User, user_id))
        return self._tokens[key]

    def substitute(self, role: str, path_parameters: dict) -> dict:
        """Most generated ids replaced by real ones; which one depends only on the generated
        value, so Hypothesis sees the same request each time it replays an input."""
        real = self.path_ids(role)
        result = dict(path_parameters)
        for name, value in path_parameters.items():
            choices = real.get(name)
            if not choices:
                continue
            pick = zlib.crc32(repr((name, value)).encode())
            if pick % 10 < 7:
                result[name] = choices[pick // 10 % len(choices)]
        return result

    # --- restoring what requests changed -------------------------------------------------------

    def restore(self) -> None:
        if self._restored_at == transaction_snapshot():
            return
        self._users()
        self._workspaces()
        self._rows(
            WorkspaceService,
            {
                sid: dict(workspace_id=self.workspace_id, name=f"Service {i}", currency="USD", sort_order=i)
                for i, sid in enumerate(self.service_ids)
            },
        )
        self._rows(
            SchedulingConnector,
            {
                cid: dict(
                    workspace_id=self.workspace_id,
                    type="calendly",
                    config={"link": f"https://calendly.com/fuzz{i}/intro"},
                    is_active=False,
                )
                for i, cid in enumerate(self.connector_ids)
            },
        )
        conversations = {
            cid: dict(workspace_id=self.workspace_id, channel="web", status="active", tags=["fuzz"])
            for cid in self.conversation_ids
        }
        conversations[self.public_conversation_id] = dict(
            workspace_id=self.workspace_id,
            channel="web_public",
            status="active",
            tags=[],
            visitor_token_hash=self._visitor_token_hash,
        )
        self._rows(Conversation, conversations)
        owner_conversation = self.conversation_ids[0]
        self._rows(
            ConversationMessage,
            {
                self.message_ids[0]: dict(conversation_id=owner_conversation, role="user", content="Hello"),
                self.message_ids[1]: dict(conversation_id=owner_conversation, role="owner", content="Hi!"),
                self.message_ids[2]: dict(
                    conversation_id=self.public_conversation_id, role="user", content="Can I book?"
                ),
            },
        )
        self._rows(
            AgentRun,
            {
                self.run_id: dict(
                    conversation_id=self.public_conversation_id,
                    user_message_id=self.message_ids[2],
                    status="queued",
                )
            },
        )
        self._webhooks()
        self._push_token()
        # A cancelled run can be cancelled again only after it is queued once more.
        db.session.execute(
            update(AgentRun).where(AgentRun.id == self.run_id).values(status="queued", finished_at=None)
        )
        db.session.commit()
        self.generation += 1
        self._tokens.clear()
        self._restored_at = transaction_snapshot()

    def _users(self) -> None:
        specs = {
            self.superuser_id: dict(is_superuser=True),
            self.owner_id: dict(is_superuser=False),
            self.other_id: dict(is_superuser=False),
        }
        self._rows(
            User,
            {
                uid: dict(email=self.emails[uid], hashed_password=self._hash, social_links={}, **extra)
                for uid, extra in specs.items()
            },
        )
        for uid, extra in specs.items():
            db.session.execute(
                update(User)
                .where(User.id == uid)
                .values(email=self.emails[uid], is_active=True, hashed_password=self._hash, **extra)
            )

    def _workspaces(self) -> None:
        specs = {
            self.workspace_id: dict(owner_id=self.owner_id, handle=HANDLE),
            self.other_workspace_id: dict(owner_id=self.other_id, handle=OTHER_HANDLE),
        }
        # The two may have swapped handles: free both first (the handle is unique).
        db.session.execute(
            update(Workspace).where(Workspace.id.in_(list(specs))).values(handle=Workspace.id.cast(db.String))
        )
        defaults = dict(name="Fuzz Shop", type="individual", tone="friendly", timezone="UTC", is_active=True)
        self._rows(Workspace, {wid: {**defaults, **spec} for wid, spec in specs.items()})
        for wid, spec in specs.items():
            db.session.execute(update(Workspace).where(Workspace.id == wid).values(is_active=True, **spec))

    def _webhooks(self) -> None:
        """A subscription (at the workspace's limit's first place) with one delivery."""
        self._rows(
            WebhookSubscription,
            {
                self.webhook_id: dict(
                    workspace_id=self.workspace_id,
                    url="https://hooks.example.com/fuzz",
                    events=["message.created"],
                    is_active=True,
                    secret="whsec_fuzz",
                    consecutive_failures=0,
                )
            },
        )
        self._rows(
            WebhookEvent,
            {self.webhook_event_id: dict(workspace_id=self.workspace_id, type="message.created", data={})},
        )
        self._rows(
            WebhookDelivery,
            {
                self.delivery_id: dict(
                    event_id=self.webhook_event_id,
                    subscription_id=self.webhook_id,
                    status="failed",
                    attempts=1,
                )
            },
        )

    def _push_token(self) -> None:
        """The owner's phone (a DELETE may have forgotten it, a POST moved it)."""
        db.session.execute(
            delete(PushToken).where(PushToken.token == self.push_token, PushToken.id != self.push_token_id)
        )
        self._rows(PushToken, {self.push_token_id: dict(user_id=self.owner_id, token=self.push_token)})
        db.session.execute(
            update(PushToken).where(PushToken.id == self.push_token_id).values(user_id=self.owner_id)
        )

    def _rows(self, model, specs: dict) -> list:
        """Inserts the rows of `specs` (id -> column values) that do not exist."""
        present = set(db.session.execute(select(model.id).where(model.id.in_(list(specs)))).scalars())
        missing = [row_id for row_id in specs if row_id not in present]
        for row_id in missing:
            db.session.add(model(id=row_id, **specs[row_id]))
        db.session.flush()
        return missing
