"""`flask seed`: a demo owner, workspace `demo`, services and a Calendly connector.

Idempotent: a second run finds every row by its natural key (email, handle,
service name, connector link) and brings it back to the demo values, so the
rows stay the same and nothing is duplicated. An existing demo owner keeps the
password it has.
"""

import os
from decimal import Decimal
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from backend.extensions import db
from backend.models import SchedulingConnector, User, Workspace, WorkspaceService
from backend.rules.passwords import password_problem
from backend.security import hash_password
from backend.services.connectors import switch_off_others

DEMO_EMAIL = "demo@example.com"
DEMO_HANDLE = "demo"
DEFAULT_DEMO_PASSWORD = "demo-password-123"
CALENDLY_LINK = "https://calendly.com/demo-clinic/intro"

OWNER = {
    "full_name": "Dana Whitfield",
    "business_name": "Harbor Street Physiotherapy",
    "tagline": "Move better, feel stronger",
    "phone": "+1 617-555-0142",
    "website": "https://harborstreetphysio.example.com",
    "social_links": {"instagram": "https://instagram.com/harborstreetphysio"},
    "setup_completed": True,
}

WORKSPACE = {
    "name": "Harbor Street Physiotherapy",
    "type": "business",
    "tone": "friendly",
    "timezone": "America/New_York",
    "public_name": "Harbor Street Physiotherapy",
    "subtitle": "Physical therapy and sports rehab in Boston's South End",
    "description": (
        "A small, independent clinic of four licensed physical therapists. We treat back and "
        "neck pain, sports injuries, post-surgical rehab and running injuries with hands-on "
        "care and a clear home exercise plan."
    ),
    "profile_image_url": None,
    "is_active": True,
}

KNOWLEDGE_BASE = """\
# Harbor Street Physiotherapy

## About us
Harbor Street Physiotherapy is an independent physical therapy clinic in Boston's South End,
founded in 2014 by Dana Whitfield, PT, DPT. Our team of four licensed physical therapists treats
back and neck pain, sports injuries, post-surgical rehabilitation (ACL, rotator cuff, hip and knee
replacement), running injuries, and work-related strain. Every visit is one-on-one with a
therapist for the full session; we never double-book.

## Hours
- Monday to Thursday: 7:00 am to 7:00 pm
- Friday: 7:00 am to 4:00 pm
- Saturday: 8:00 am to 12:00 pm (sports rehab and new patients only)
- Sunday and US federal holidays: closed
All times are Eastern Time. Phone lines open at 8:00 am.

## Location and getting here
We are at 412 Harbor Street, Suite 2B, Boston, MA 02118, on the second floor above the bakery.
There is an elevator to the left of the main entrance.
- Subway: a 6-minute walk from Back Bay station (Orange Line).
- Bus: routes 9 and 10 stop at the corner of Harbor and Union.
- Bikes: there is a bike rack in front of the building.

## Parking
Free parking for patients in the lot behind the building (enter from Union Street); spaces
marked "Harbor Physio" are ours. Please put the parking card from the front desk on your
dashboard. Street parking is metered until 8:00 pm.

## What to bring to your first visit
Photo ID, your insurance card, a list of medications, and any imaging reports or referral from
your doctor. Wear or bring comfortable clothes you can move in (shorts for knee and hip
problems). Please arrive 10 minutes early to fill in the intake form, or fill it in online from
the link in your confirmation email.

## Do I need a referral?
No. Massachusetts allows direct access to physical therapy, so you can book without a doctor's
referral. Some insurance plans still require one for coverage: check with your plan.

## Payment and insurance
We are in network with Blue Cross Blue Shield of Massachusetts, Harvard Pilgrim, Tufts Health
Plan and Medicare. For other plans we give you a superbill to submit for out-of-network
reimbursement. Self-pay prices are listed with our services. We accept all major credit cards,
HSA/FSA cards, Apple Pay and Google Pay; we do not accept cash or checks. Payment is due at the
end of each visit. Package of 6 follow-up visits: 10% off when paid upfront.

## Cancellation and late policy
Please cancel or reschedule at least 24 hours before your appointment, by phone, email or the
link in your confirmation email. Late cancellations and no-shows are charged $50 (the full
session fee for self-pay initial evaluations). If you arrive more than 15 minutes late we may
need to shorten or reschedule the visit. We waive the fee once per year, and always for
illness or emergencies.

## Contact
Phone: +1 617-555-0142 (Monday to Friday, 8:00 am to 5:00 pm)
Email: hello@harborstreetphysio.example.com
For medical emergencies call 911; we cannot give urgent medical advice by chat.

## Frequently asked questions
**How long is a course of treatment?** Most people come once or twice a week for 4 to 8 weeks;
your therapist gives you an estimate at the first visit.
**Do you offer dry needling?** Yes, three of our therapists are certified; ask at your visit.
**Do you treat children?** We see patients aged 12 and up; under 18s need a parent or guardian
at the first visit.
**Can I do sessions online?** Yes, follow-up sessions can be done by video call (same price).
Initial evaluations are in person.
**Is there a changing room?** Yes, and a restroom on the same floor.
**Do you sell equipment?** We sell resistance bands and foam rollers at cost at the front desk.
**Can I choose my therapist?** Yes, mention it when you book and we will do our best.
**Languages:** English and Spanish.
"""

SERVICES: tuple[dict[str, Any], ...] = (
    {
        "name": "Initial evaluation",
        "description": "A full assessment of your problem, a diagnosis, hands-on treatment and a home plan.",
        "format": "in_person",
        "duration_minutes": 60,
        "starting_price": Decimal("140.00"),
        "currency": "USD",
        "sort_order": 0,
    },
    {
        "name": "Follow-up session",
        "description": "Manual therapy and guided exercise, one-on-one with your therapist.",
        "format": "in_person",
        "duration_minutes": 45,
        "starting_price": Decimal("95.00"),
        "currency": "USD",
        "sort_order": 1,
    },
    {
        "name": "Sports injury screen",
        "description": "Movement screen and return-to-sport plan for runners and team athletes.",
        "format": "in_person",
        "duration_minutes": 30,
        "starting_price": Decimal("65.00"),
        "currency": "USD",
        "sort_order": 2,
    },
)


def _set(obj, values: dict) -> None:
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)


def seed_demo(password: str) -> Workspace:
    """Creates or restores the demo owner, workspace, services and connector; commits."""
    user = db.session.execute(select(User).where(User.email == DEMO_EMAIL)).scalar_one_or_none()
    workspace = db.session.execute(
        select(Workspace).where(Workspace.handle == DEMO_HANDLE)
    ).scalar_one_or_none()
    # Checked before any write, so a refusal leaves the database as it was.
    if workspace is not None and (user is None or workspace.owner_id != user.id):
        raise click.ClickException(f"Handle '{DEMO_HANDLE}' belongs to another owner: not touching it.")
    if user is None:
        user = User(
            email=DEMO_EMAIL, hashed_password=hash_password(password), is_active=True, is_superuser=False
        )
        db.session.add(user)
    _set(user, {**OWNER, "is_active": True})
    db.session.flush()

    if workspace is None:
        workspace = db.session.execute(
            select(Workspace).where(Workspace.owner_id == user.id)
        ).scalar_one_or_none()
    if workspace is None:
        workspace = Workspace(owner_id=user.id, handle=DEMO_HANDLE)
        db.session.add(workspace)
    _set(workspace, {**WORKSPACE, "handle": DEMO_HANDLE, "knowledge_base": KNOWLEDGE_BASE})
    db.session.flush()

    existing = {
        s.name: s
        for s in db.session.execute(
            select(WorkspaceService).where(WorkspaceService.workspace_id == workspace.id)
        ).scalars()
    }
    for values in SERVICES:
        service = existing.get(values["name"])
        if service is None:
            service = WorkspaceService(workspace_id=workspace.id, name=values["name"])
            db.session.add(service)
        _set(service, {**values, "is_active": True})

    _ensure_active_calendly(workspace)
    db.session.commit()
    return workspace


def _ensure_active_calendly(workspace: Workspace) -> None:
    connectors = db.session.execute(
        select(SchedulingConnector).where(SchedulingConnector.workspace_id == workspace.id)
    ).scalars()
    demo = next(
        (c for c in connectors if c.type == "calendly" and (c.config or {}).get("link") == CALENDLY_LINK),
        None,
    )
    switch_off_others(workspace.id, demo.id if demo is not None else None)
    if demo is None:
        demo = SchedulingConnector(workspace_id=workspace.id, type="calendly", config={"link": CALENDLY_LINK})
        db.session.add(demo)
    demo.is_active = True
    db.session.flush()


@click.command("seed")
@with_appcontext
def seed_command() -> None:
    """Create the demo owner, workspace `demo`, its services and a Calendly connector (idempotent)."""
    password = os.environ.get("SEED_DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD
    problem = password_problem(password, "SEED_DEMO_PASSWORD")
    if problem:
        raise click.ClickException(problem)
    workspace = seed_demo(password)
    click.echo(
        f"Seeded workspace '{workspace.handle}' owned by {DEMO_EMAIL}; visitor page: /chat/{workspace.handle}"
    )
