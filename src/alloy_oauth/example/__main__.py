"""Run the example app: ``python -m alloy_oauth.example``.

Reads ALLOY_API_KEY, ALLOY_BASE_URL, ALLOY_API_VERSION like the client, and
EXAMPLE_PUBLIC_URL (default http://localhost:3000), EXAMPLE_DB_PATH (default example.db),
EXAMPLE_SESSION_SECRET (default: a random one, so sessions end with the process).
"""

from __future__ import annotations

import os
import secrets
import sys
from urllib.parse import urlsplit

import uvicorn

from .app import create_app


def main() -> None:
    api_key = os.environ.get("ALLOY_API_KEY")
    if not api_key:
        sys.exit("Set ALLOY_API_KEY to an API key of the alloy-oauth server.")
    public_url = os.environ.get("EXAMPLE_PUBLIC_URL", "http://localhost:3000")
    app = create_app(
        alloy_base_url=os.environ.get("ALLOY_BASE_URL", "http://localhost:8000"),
        api_key=api_key,
        api_version=os.environ.get("ALLOY_API_VERSION", "2025-09"),
        public_url=public_url,
        db_path=os.environ.get("EXAMPLE_DB_PATH", "example.db"),
        session_secret=os.environ.get("EXAMPLE_SESSION_SECRET") or secrets.token_urlsafe(32),
    )
    port = urlsplit(public_url).port or 3000
    print(f"OAuth example running on {public_url}")
    print(f"Visit {public_url}/connect/sandbox to start the OAuth flow")
    uvicorn.run(app, host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
