"""Collectors of readings that do not come from logs (hardware); each is a prometheus-client
custom collector registered next to the log metrics and served from its own snapshot."""
