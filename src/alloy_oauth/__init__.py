"""alloy-oauth: a self-hostable OAuth connection service and its Python client."""
