"""Images, private registries and the local image store. (What each module owns and may import:
README.md.)
"""
