"""Background jobs: queries, cancellation, starters, and live progress over WebSocket."""
