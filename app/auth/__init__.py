"""Authentication: passwords, session tokens, API keys, login throttling."""
