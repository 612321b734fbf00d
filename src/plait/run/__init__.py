"""Running a plan: scheduling, the engine, executors and limits."""
