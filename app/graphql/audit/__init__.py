"""The audit log ("Logs")."""
