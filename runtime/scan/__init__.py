"""`fakedet scan`: score an archive into Parquet result shards, resumably.

One more face of the runtime: `local` decodes in a pool of worker processes and scores
with one Detector; `ray` runs the same decode and score steps on Ray Data (an optional
extra). Both write the same rows through the same shard store. Nothing here is imported
by `fakedet.runtime`; pyarrow and ray are imported only when a scan runs.
"""
