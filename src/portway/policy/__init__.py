"""Security policy: Pod Security Standards levels, isolation tiers and image rules
per namespace. Pure: it sees specs and policies, never an engine."""
