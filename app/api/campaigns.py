"""Routes of the campaigns module."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.routing import TxRoute

router = APIRouter(route_class=TxRoute)
