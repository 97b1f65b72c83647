"""The HTTP server: thin routes over the service modules."""
