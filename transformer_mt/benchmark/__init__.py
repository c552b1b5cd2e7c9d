"""`make bench`: our training and decoding side by side with a same-size Hugging Face Marian model.

`timing` times jobs taking turns step by step and samples the matmul peak alongside; `flops` counts
the matmul FLOPs that MFU and the decoding floors divide; `systems` builds what is compared (ours,
ours without the key/value cache, the peer) and the jobs each times; `workload` prepares the data
as a training run does; `suite` runs it all into a `records.BenchReport`; `report` prints it as
Markdown. scripts/bench.py is the command line; docs/performance.md explains every figure.

`make bench-serve` (scripts/bench_serve.py, docs/serving.md): `serving` runs the server benchmark,
`server_process` starts the real server as a subprocess, `load` is its clients and their statistics.
"""
