"""Tenantry: an open control plane for backup and disaster-recovery service providers."""
