"""The GraphQL API: one package per domain, shared glue in this folder."""
