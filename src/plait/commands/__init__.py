"""One module per CLI command: each renders what the library computes."""
