"""The HTTP app: the generic incident API and incident-tool webhooks (`closeloop serve`)."""

from closeloop.web.app import create_app
from closeloop.web.settings import WebSecrets, load_secrets

__all__ = ["WebSecrets", "create_app", "load_secrets"]
