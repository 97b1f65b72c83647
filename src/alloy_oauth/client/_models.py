"""The small result objects the client returns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

_TOKEN_PARAM = re.compile(r"([?&]token=)[^&#]*")


@dataclass(frozen=True, slots=True)
class OAuthStart:
    """The answer to initiating a flow: send the user to ``oauth_url``, keep ``state``."""

    oauth_url: str
    credential_id: str
    state: str

    def __repr__(self) -> str:
        # The URL carries a single-use token: keep it out of logs that print the object.
        shown = _TOKEN_PARAM.sub(r"\1***", self.oauth_url)
        return (
            f"OAuthStart(oauth_url={shown!r}, credential_id={self.credential_id!r}, "
            f"state={self.state!r})"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A connection made by the flow; ``connection_id`` is what the app stores."""

    connection_id: str
    credential_id: str
    status: str


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A current access token of a connection. Its repr never shows the token."""

    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeletedConnection:
    """What deleting a connection did at the provider.

    ``revoked`` is True (the provider revoked the grant), False (it could not be told or
    refused: ``revocation_error`` says why; the connection is deleted all the same) or None
    (the provider offers no revocation, or the server does not say).
    """

    revoked: bool | None = None
    revocation_error: str | None = None
