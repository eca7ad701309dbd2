"""Reports: the HTML page rendered from a claims.json (and only from it)."""
