"""The clustering state in Redis: one atomic step per face or batch, the space's keys, its lease, its index
snapshots."""
