"""Policies (privacy, terms, cookies) as versioned records, change notices and their
acknowledgements; what the product stores on devices (COOKIES) and which service providers
receive personal data (PROVIDERS)."""
