"""What the agent knows about one business, loaded once per run as frozen plain data.

The run loop streams for seconds with the database session released, so nothing
here may be a live ORM object: every fact is copied into a frozen dataclass up
front, in a fixed, small number of queries.
"""

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from backend.errors import not_found
from backend.extensions import db
from backend.models import SchedulingConnector, User, Workspace, WorkspaceService
from backend.rules.connectors import usable_link
from backend.rules.tones import DEFAULT_TONE
from backend.services import connectors


@dataclass(frozen=True)
class WorkspaceFacts:
    id: uuid.UUID
    handle: str
    name: str
    public_name: str | None = None
    subtitle: str | None = None
    description: str | None = None
    type: str = "individual"
    tone: str = DEFAULT_TONE
    timezone: str = "UTC"
    knowledge_base: str | None = None
    handoff_mode: str = "notify"  # what request_human does besides notifying: `pause` the agent

    @property
    def display_name(self) -> str:
        return (self.public_name or "").strip() or self.name


@dataclass(frozen=True)
class OwnerFacts:
    full_name: str | None = None
    email: str | None = None
    business_name: str | None = None
    tagline: str | None = None
    bio: str | None = None
    phone: str | None = None
    website: str | None = None
    social_links: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    profile_type: str | None = None
    about: str | None = None
    faqs: str | None = None


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    description: str | None = None
    format: str | None = None
    duration_minutes: int | None = None
    starting_price: Decimal | None = None
    currency: str = "USD"


@dataclass(frozen=True)
class BookingFacts:
    type: str
    link: str


@dataclass(frozen=True)
class AgentContext:
    workspace: WorkspaceFacts
    owner: OwnerFacts
    services: list[ServiceFacts]
    booking: BookingFacts | None


def load_agent_context(workspace_id: uuid.UUID) -> AgentContext:
    """Copies the workspace, its owner, active services and active connector (3 queries)."""
    workspace = db.session.scalars(
        select(Workspace).options(joinedload(Workspace.owner)).where(Workspace.id == workspace_id)
    ).first()
    if workspace is None:
        raise not_found("Workspace")
    services = db.session.scalars(
        select(WorkspaceService)
        .where(WorkspaceService.workspace_id == workspace_id, WorkspaceService.is_active.is_(True))
        .order_by(WorkspaceService.sort_order, WorkspaceService.name, WorkspaceService.id)
    ).all()
    connector = connectors.active_connector(workspace_id)
    return AgentContext(
        workspace=_workspace_facts(workspace),
        owner=_owner_facts(workspace.owner),
        services=[_service_facts(s) for s in services],
        booking=_booking_facts(connector),
    )


def _workspace_facts(w: Workspace) -> WorkspaceFacts:
    return WorkspaceFacts(
        id=w.id,
        handle=w.handle,
        name=w.name,
        public_name=w.public_name,
        subtitle=w.subtitle,
        description=w.description,
        type=w.type,
        tone=w.tone,
        timezone=w.timezone,
        knowledge_base=w.knowledge_base,
        handoff_mode=w.handoff_mode,
    )


def _owner_facts(u: User) -> OwnerFacts:
    links = u.social_links if isinstance(u.social_links, dict) else {}
    return OwnerFacts(
        full_name=u.full_name,
        email=u.email,
        business_name=u.business_name,
        tagline=u.tagline,
        bio=u.bio,
        phone=u.phone,
        website=u.website,
        social_links={str(k): str(v) for k, v in links.items() if v},
        name=u.name,
        profile_type=u.profile_type,
        about=u.about,
        faqs=u.faqs,
    )


def _service_facts(s: WorkspaceService) -> ServiceFacts:
    return ServiceFacts(
        name=s.name,
        description=s.description,
        format=s.format,
        duration_minutes=s.duration_minutes,
        starting_price=s.starting_price,
        currency=s.currency or "USD",
    )


def _booking_facts(connector: SchedulingConnector | None) -> BookingFacts | None:
    if connector is None:
        return None
    link = usable_link(connector.config)
    return BookingFacts(type=connector.type, link=link) if link else None
