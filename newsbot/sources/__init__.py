"""News sources: parsing what the user typed, the SSRF guard, Reddit and RSS/Atom."""
