"""Test infrastructure for alloy-oauth: local servers, a real OIDC provider, a bad provider and
an HTTP "browser". Import from the submodules (tests.support.oidc, ...) or from here."""

from .bad_provider import BadProvider, RecordedRequest, start_bad_provider
from .browser import HttpBrowser, query_params
from .oidc import OidcProvider, provider_yaml_entry, start_oidc_provider
from .servers import RunningProcess, free_port, run_asgi, run_process

__all__ = [
    "BadProvider",
    "HttpBrowser",
    "OidcProvider",
    "RecordedRequest",
    "RunningProcess",
    "free_port",
    "provider_yaml_entry",
    "query_params",
    "run_asgi",
    "run_process",
    "start_bad_provider",
    "start_oidc_provider",
]
