"""Local stand-in servers for outside systems, answering the way the real services do (tests, demos)."""
