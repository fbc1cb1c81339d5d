"""The role matrix, exported."""
