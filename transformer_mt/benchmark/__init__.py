"""Everything that measures: `make bench*` and `make check-gpu`. The one wing that knows where the
checkout is (`machine.ROOT`), since it runs our scripts and reads configs/.

- `machine`: the CPU's name, /proc readers, stopping a command with all it started, running a script
  (standard library only);
- `make bench` (scripts/bench.py): `timing` times jobs taking turns step by step and samples the matmul
  peak alongside; `flops` counts the matmul FLOPs that MFU and the decoding floors divide; `systems`
  builds what is compared (ours, ours without the key/value cache, the peer); `workload` prepares the
  data as a training run does; `suite` runs it all into a `records.BenchReport`; `report` prints it;
- `make bench-deploy`: `deploy`; `make bench-data`: `data_scale`, with `data_probes` run in fresh
  processes; `make bench-shapes`: `shape_census` (counts from the batch plan) and `shapes` (timings,
  profiles); `make bench-export`: `export_agreement`;
- `make bench-serve` (docs/serving.md): `serving` runs the server benchmark, `server_process` starts the
  real server as a subprocess, `load` is its clients and their statistics;
- `make check-gpu`: `gpu_check` (standard library at module level; docs/gpu-check.md).
"""
