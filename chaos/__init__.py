"""`make chaos`: issue 15's reliability table as a runnable suite (see chaos/__main__.py)."""
