"""Family P, parameter pruning. Shared helpers: common (masks), report (tables, sensitivity), surgery (structure)."""
