"""Reading users' files, the prepared HDF5 layout, and batches."""
