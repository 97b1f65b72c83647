"""The calling account's own settings: its redirect-URI allow-list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from alloy_oauth.errors import BadRequest
from alloy_oauth.server.deps import PrincipalDep, RuntimeDep
from alloy_oauth.store.models import Account

router = APIRouter(tags=["account"])


class RedirectUris(BaseModel):
    redirect_uris: list[str] = Field(alias="redirectUris", max_length=100)


@router.get("/account/redirect-uris")
async def get_redirect_uris(rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    async with rt.sessions() as db:
        account = await db.get(Account, who.account_id)
    assert account is not None
    return {"redirectUris": list(account.redirect_uris or [])}


@router.put("/account/redirect-uris")
async def put_redirect_uris(body: RedirectUris, rt: RuntimeDep,
                            who: PrincipalDep) -> dict[str, Any]:
    for uri in body.redirect_uris:
        if not uri.startswith("https://") and not (
            not rt.settings.is_production and uri.startswith(("http://localhost",
                                                              "http://127.0.0.1"))):
            raise BadRequest(f"Invalid redirect_uri '{uri}': allow-list entries must be https "
                             "(http://localhost in development).", code="invalid_redirect_uri")
    async with rt.sessions.begin() as db:
        account = await db.get(Account, who.account_id)
        assert account is not None
        account.redirect_uris = list(body.redirect_uris)
    return {"redirectUris": list(body.redirect_uris)}
