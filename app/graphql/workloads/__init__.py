"""Managed workloads in the API: computers, agents, backup servers, jobs, sessions, restore
points, protected data and the monitoring summary."""
