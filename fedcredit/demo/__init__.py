"""The embedded demo: a synthetic alliance, started as separate processes on loopback."""
