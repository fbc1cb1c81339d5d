"""Resellers, companies and locations."""
