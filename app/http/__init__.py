"""What every route shares: sessions and principals (deps), the error answers (errors), rate
limits, the pages' template environment and its context."""
