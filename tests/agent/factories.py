"""Agent test data: plain AgentContext builders and DB rows written through the models."""

import itertools
import uuid
from decimal import Decimal

from backend.agent.context import AgentContext, BookingFacts, OwnerFacts, ServiceFacts, WorkspaceFacts
from backend.extensions import db
from backend.models import Conversation, SchedulingConnector, Workspace, WorkspaceService
from backend.services import runs
from tests.factories import make_message, make_user

_seq = itertools.count(1)


def make_context(
    tone: str = "professional",
    timezone: str = "UTC",
    knowledge_base: str | None = None,
    booking: BookingFacts | None = None,
    services: list[ServiceFacts] | None = None,
    **owner_fields,
) -> AgentContext:
    workspace = WorkspaceFacts(
        id=uuid.uuid4(),
        handle="studio",
        name="Studio Workspace",
        public_name="Luz Yoga Studio",
        tone=tone,
        timezone=timezone,
        knowledge_base=knowledge_base,
    )
    return AgentContext(
        workspace=workspace,
        owner=OwnerFacts(**owner_fields),
        services=list(services or []),
        booking=booking,
    )


def make_workspace(owner=None, **fields) -> Workspace:
    n = next(_seq)
    owner = owner or make_user()
    workspace = Workspace(
        owner_id=owner.id,
        handle=fields.pop("handle", f"biz-{n}"),
        name=fields.pop("name", f"Business {n}"),
        **fields,
    )
    db.session.add(workspace)
    db.session.commit()
    return workspace


def make_service(workspace: Workspace, name: str, price: str | None = "45.00", **fields) -> WorkspaceService:
    service = WorkspaceService(
        workspace_id=workspace.id,
        name=name,
        starting_price=Decimal(price) if price is not None else None,
        **fields,
    )
    db.session.add(service)
    db.session.commit()
    return service


def make_connector(workspace: Workspace, link: str, type: str = "calendly", is_active: bool = True):
    connector = SchedulingConnector(
        workspace_id=workspace.id, type=type, config={"link": link}, is_active=is_active
    )
    db.session.add(connector)
    db.session.commit()
    return connector


def queue_message(conversation_id, content: str = "When are you open?") -> uuid.UUID:
    """A visitor message and its queued run, as the public API writes them."""
    conversation = db.session.get(Conversation, conversation_id)
    message = make_message(conversation, "user", content)
    run = runs.create_run(conversation, message)
    db.session.commit()
    return run.id
