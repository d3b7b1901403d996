"""Benchmarks: ``python -m benchmarks NAME [args]`` runs ``benchmarks/NAME.py``'s
``main(argv)``, which prints one JSON line per workload with the keys ``workload``,
``n``, ``seconds``, ``msgs_per_s`` and ``peak_rss_mb``."""
