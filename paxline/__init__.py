"""The product shell: the `paxline` command and the local stack it starts.

It sits above both halves (`coordinator`, the consensus side, and `pipeline`, the data plane)
and is the only package that imports both; neither half imports it (docs/architecture.md).
"""
