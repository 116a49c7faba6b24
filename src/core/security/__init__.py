"""Authentication and authorisation: X509 chains and proxies, tokens, identities, rights."""
