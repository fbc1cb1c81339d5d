"""Business rules and transactions, one module per domain. No GraphQL here."""
