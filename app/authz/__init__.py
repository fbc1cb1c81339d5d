"""Authorization: the seed matrices as data, one engine, named rules, row scope."""
