"""Containers and capsules: the use cases of Zun's container and capsule APIs. (What each
module owns and may import: README.md.)
"""
