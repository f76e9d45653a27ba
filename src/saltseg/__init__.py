"""saltseg: the TGS Salt Identification Challenge winning recipe as a Snakemake DAG."""

__version__ = "0.1.0"
