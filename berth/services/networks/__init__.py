"""Project networks and security groups. (What each module owns and may import: README.md.)
"""
