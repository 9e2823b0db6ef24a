"""The incident.io plugin's settings: none in the config file; the webhook's signing secrets come only from the
environment, CLOSELOOP_INCIDENTIO_SECRETS (`whsec_...`, comma-separated during a rotation)."""

ENV_WEBHOOK_SECRETS = "CLOSELOOP_INCIDENTIO_SECRETS"
