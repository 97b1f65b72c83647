"""alloy-oauth: a self-hostable OAuth connection service and its Python client.

The client is the public surface of this package; the server lives in `alloy_oauth.server`.
"""

from alloy_oauth.client import (
    AccessToken,
    AlloyError,
    AlloyOAuthFlow,
    AsyncAlloyOAuthFlow,
    AuthenticationError,
    Connection,
    ConnectionNotFound,
    DeletedConnection,
    InvalidAuthorizationCode,
    InvalidRedirectUri,
    NeedsReauth,
    NotFound,
    OAuthStart,
    RateLimited,
    WebhookSignatureError,
    parse_webhook,
    verify_webhook_signature,
)

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
