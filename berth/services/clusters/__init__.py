"""Magnum's use cases: cluster templates, clusters, node groups, quotas. (What each module owns
and may import: README.md.)
"""
