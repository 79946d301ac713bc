"""What the clustering asks of the machine: its cores, its CPU instruction set, huge pages for the index."""
