"""Pruning passes: structured channels (with repair), magnitude and N:M sparsity, sparse storage."""
