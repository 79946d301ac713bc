"""`facestream produce`: cameras and files to the frames topic, as a watched process."""
