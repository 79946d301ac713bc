"""`facestream run` and `facestream eval`: the pipeline in one process, its outputs and report."""
