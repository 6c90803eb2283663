"""News sources: parsing what users type, the SSRF guard, downloads, and a Fetcher per kind."""
