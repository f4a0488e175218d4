"""Fuzz tests: the OpenAPI document against the app, and hostile bodies on every write route."""
