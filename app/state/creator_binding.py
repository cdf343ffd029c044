"""Machine `creator_binding`: an agency invites a creator (达人绑定); the creator accepts."""

from __future__ import annotations

from app.db.models.live_bases import CreatorBinding
from app.db.repositories.live_bases import CreatorBindingRecord
from app.state.binding import binding_workflow

CREATOR_BINDING = binding_workflow(
    "creator_binding",
    model=CreatorBinding,
    record=CreatorBindingRecord,
    invitee_role="creator",
    invitee_column="creator_id",
    description="An agency binds a creator (达人绑定); a binding to a head annual agency is strong.",
    accept_description="the creator accepts (409 already_bound with another active binding)",
    exclusive=True,
)
