"""Users, sessions, API keys, the viewer."""
