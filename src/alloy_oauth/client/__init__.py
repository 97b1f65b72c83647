"""The Python client of an alloy-oauth server (HTTP only: works with any server that speaks
the contract)."""

from ._async import AsyncAlloyOAuthFlow
from ._errors import (
    AlloyError,
    AuthenticationError,
    ConnectionNotFound,
    InvalidAuthorizationCode,
    InvalidRedirectUri,
    NeedsReauth,
    NotFound,
    RateLimited,
)
from ._models import AccessToken, Connection, DeletedConnection, OAuthStart
from ._sync import AlloyOAuthFlow
from .webhooks import WebhookSignatureError, parse_webhook, verify_webhook_signature

__all__ = [
    "AccessToken",
    "AlloyError",
    "AlloyOAuthFlow",
    "AsyncAlloyOAuthFlow",
    "AuthenticationError",
    "Connection",
    "ConnectionNotFound",
    "DeletedConnection",
    "InvalidAuthorizationCode",
    "InvalidRedirectUri",
    "NeedsReauth",
    "NotFound",
    "OAuthStart",
    "RateLimited",
    "WebhookSignatureError",
    "parse_webhook",
    "verify_webhook_signature",
]
