"""GraphQL for cloud failover plans and their runs."""
