"""asv benchmark suite (``asv run``; config in ../asv.conf.json)."""
