"""In-memory fakes that honour Berth's extension protocols (tests only, never plugins)."""
