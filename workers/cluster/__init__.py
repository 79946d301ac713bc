"""The cluster stage: faces and commands in, identities out, each space's state in Redis."""
