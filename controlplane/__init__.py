"""Flotilla control plane: gateway, scheduling framework, controller, runtimes."""
