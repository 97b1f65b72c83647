"""Imports every module that defines tables, so metadata and migrations see them all."""

from alloy_oauth.sandbox import models as sandbox_models
from alloy_oauth.store import models

__all__ = ["models", "sandbox_models"]
