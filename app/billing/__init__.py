"""Billing arithmetic and documents: money (currencies and rounding), pricing (usage times
rates into invoice lines and totals), and the renderers built on them. Pure modules: no I/O."""
