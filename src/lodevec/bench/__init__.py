"""``lodevec bench`` (the model forward) and ``lodevec bench search`` (the store)."""
