"""What each catalogue template watches, one module per area. Every evaluator returns all the
objects currently in alarm state among the organizations in scope, computed with one or two
set-based statements whatever the number of objects."""
