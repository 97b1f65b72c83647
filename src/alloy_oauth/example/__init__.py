"""The guide's example web app (FastAPI), built on alloy_oauth.client only."""

from .app import DEFAULT_CONNECTORS, create_app

__all__ = ["DEFAULT_CONNECTORS", "create_app"]
