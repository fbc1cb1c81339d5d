"""GraphQL for billing: subscription plans and their assignment (plans.py), invoices."""
