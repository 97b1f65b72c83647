"""Offline stand-ins for real providers, for testing apps built on alloy-oauth.

Each emulator is a small HTTP server on 127.0.0.1 that reproduces one provider's documented
authorize, token and refresh behaviour, its error shapes and one API call:

    from alloy_oauth.testing import NotionEmulator

    with NotionEmulator() as notion:
        # ALLOY_PROVIDERS_FILE entry: the built-in `notion` connector, URLs pointed here
        providers = notion.providers_entry()
        env = notion.connector_env()   # ALLOY_CONNECTOR_NOTION_CLIENT_ID / _SECRET
        ...

`EMULATORS` maps connector ids to emulator classes.
"""

from alloy_oauth.testing._base import (
    EmulatorError,
    Grant,
    ProviderEmulator,
    RecordedRequest,
    running,
)
from alloy_oauth.testing._server import serve_in_thread
from alloy_oauth.testing.github import GitHubEmulator
from alloy_oauth.testing.google_drive import GoogleDriveEmulator
from alloy_oauth.testing.hubspot import HubSpotEmulator
from alloy_oauth.testing.notion import NotionEmulator
from alloy_oauth.testing.salesforce import SalesforceEmulator
from alloy_oauth.testing.slack import SlackEmulator

EMULATORS: dict[str, type[ProviderEmulator]] = {
    cls.connector_id: cls
    for cls in (NotionEmulator, HubSpotEmulator, SalesforceEmulator, SlackEmulator,
                GoogleDriveEmulator, GitHubEmulator)
}

__all__ = [
    "EMULATORS",
    "EmulatorError",
    "GitHubEmulator",
    "GoogleDriveEmulator",
    "Grant",
    "HubSpotEmulator",
    "NotionEmulator",
    "ProviderEmulator",
    "RecordedRequest",
    "SalesforceEmulator",
    "SlackEmulator",
    "running",
    "serve_in_thread",
]
