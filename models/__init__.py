"""Models by name: the tiny offline models, built on first use, and the resolver jobs use."""
