"""closeloop: no incident lesson lost."""

__version__ = "0.1.0"
