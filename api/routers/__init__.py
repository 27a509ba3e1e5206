"""Routes by resource; each handler reads the request, calls a service, picks the status."""
