"""Latency and throughput per backend, precision and batch size.

For every combination: warm up for `warmup_s`, then `repeats` timed runs of
`duration_s` each. Per iteration the stages trtexec users know are timed:

  preprocess   host decoding + preprocessing (only with an images folder, `e2e_dir`)
  h2d          host-to-device copy      } None where the backend cannot separate them
  compute      inference on the device  } (ONNX Runtime on the CPU, PyTorch eager):
  d2h          device-to-host copy      } compute is then the whole call
  end_to_end   wall time of the iteration, everything included

Throughput (images/s) is reported as the median of the repeats with their IQR and
min/max; latency percentiles pool every timed iteration. Combinations that cannot
run are listed with the reason, never fatal to the run.

The package, one job a file: run.py (settings, the measuring loop), inputs.py (what is
fed), stats.py (medians, spread, percentiles), schema.py (the JSON report's schema and
validator), report.py (table, CSV, JSON), plot.py (the PNG), trtexec.py (the same plan
under trtexec) with trtexec_command.py (running it, reading its summary), cli.py.
"""

from .report import format_table, to_csv, write_csv, write_json
from .run import BenchSettings, machine_info, measure, run_bench, summarize
from .schema import REPORT_SCHEMA, REPORT_SCHEMA_VERSION, STAGES, validate_report

__all__ = ["BenchSettings", "REPORT_SCHEMA", "REPORT_SCHEMA_VERSION", "STAGES", "format_table", "machine_info", "measure",
           "run_bench", "summarize", "to_csv", "validate_report", "write_csv", "write_json"]
