"""GraphQL for alarms: triggered alarms with their history, alarm templates, live alarms
(and, in notifications.py, notification settings, webhooks and maintenance windows)."""
