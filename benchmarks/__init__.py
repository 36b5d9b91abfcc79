"""Benchmarks for the Orb source, run with `python -m benchmarks [incremental|fanout|cpu]`.

Every figure is a ratio against a baseline measured in the same invocation, so results from
different machines stay comparable. Each pipeline run happens in a fresh subprocess with its
own working directory, and timed runs talk to a sandbox in yet another process, so neither
the fake API's CPU nor its GIL ends up in the pipeline's figures.
"""
