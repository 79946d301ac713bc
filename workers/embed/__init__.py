"""The embed stage: frames in, faces and appearances out."""
