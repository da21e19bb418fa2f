"""Wire schemas of the services (generated code under v1)."""
