"""Deterministic example data for the recipes in config/examples/ (written by `stagewise init`).

Each generator writes ordinary files that the normal readers read: a genome FASTA with its GFF3 annotation
(`genome`), OpenSpliceAI-style HDF5 one-hot sequences (`sequences`), PNG images in class folders (`images`), AnnData
`.h5ad` counts (`expression`), a Parquet table and a checkpoint made elsewhere (`molecules`); `examples` names the
files each example reads. The same name and seed always give the same bytes of data.
"""
