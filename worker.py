"""The closeloop worker's launcher: `python worker.py` (or `closeloop worker`) runs closeloop.worker, which
builds the client from the config, registers every workflow and activity, applies the Schedules and shuts
down gracefully on SIGTERM or SIGINT."""

from closeloop.worker import exit_now, main

if __name__ == "__main__":
    exit_now(main())
