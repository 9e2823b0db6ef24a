"""The Opsgenie plugin's settings: none in the config file; the shared secrets of the X-Closeloop-Token header come
only from the environment, CLOSELOOP_OPSGENIE_TOKENS (comma-separated)."""

ENV_TOKENS = "CLOSELOOP_OPSGENIE_TOKENS"
