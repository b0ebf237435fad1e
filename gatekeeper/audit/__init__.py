"""The signed, tamper-evident audit log (entries, Merkle tree, checkpoints, tiles)."""
