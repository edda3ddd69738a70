"""localsnn.train: Float PyTorch model of the spec's networks and rules (planned)."""
