"""Imports every module that defines tables, so metadata and migrations see them all."""

from alloy_oauth.auth_configs import models as auth_config_models
from alloy_oauth.frontend import models as frontend_models
from alloy_oauth.sandbox import models as sandbox_models
from alloy_oauth.store import models
from alloy_oauth.webhooks import models as webhook_models

__all__ = ["auth_config_models", "frontend_models", "models", "sandbox_models", "webhook_models"]
