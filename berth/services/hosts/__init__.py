"""Hosts and their agents: registration, desired state, placement, calls to an agent. (What
each module owns and may import: README.md.)
"""
