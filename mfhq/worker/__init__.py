"""What runs ONE shard, wherever it runs.

The process model, top to bottom:
  driver    `mfhq extract` (mfhq.extract): plans the shards and hands them to an executor.
  runner    a process that takes one shard at a time and calls `run_shard` (shard.py): a runner
            process of the local executor (`run.workers` is the number of runner slots) or an
            actor of the Ray executor. A lost runner costs its shard, which runs again.
  worker    the watched worker process (process.py) each runner owns through its `Watchdog`
            (watchdog.py): it loads the models once and runs clips through the stages
            (clip.py); a hang or a native crash costs one clip, never the run.

This package imports nothing above it (no executors, no plan): the executors call down into it.
"""
