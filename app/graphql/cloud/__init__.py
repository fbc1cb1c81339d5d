"""Veeam Cloud Connect in the API: infrastructure, tenant accounts, allocations, remote sessions."""
