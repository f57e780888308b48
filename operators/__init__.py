"""Flotilla Kubernetes operator (kopf)."""
