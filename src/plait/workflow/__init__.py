"""From a feature request to a plan: role agents run on their own (agent), the spec writer (spec), the
planner with its repair loop (plan), and what they are told about the repository (context)."""
