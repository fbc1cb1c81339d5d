"""Kinds of background job: what each does, step by step, and who may see it."""
