"""``make bench``: benchmarks on the stages' own test VMs, one JSON file per benchmark in book/bench/.

Modules: ``common`` (VMs, clean-up, progress, statistics, machine facts, results files),
``spawn`` (spawn to ready, its floors and breakdown, the before/after of a faster spawn),
``concurrency`` (many users at once), ``proxies`` (CHP against Traefik, paired),
``restart`` (the hub restarting behind Traefik), ``project`` (the book build), and ``vm/``
(small scripts that run inside a test VM with its own Python). ``python -m scripts.bench``
runs them all.
"""
