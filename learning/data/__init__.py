"""Storage and formats: episodes and their store, replay buffers, frame stacking, checkpoints, atomic writes,
and the importers of other people's data (one safe unpickler)."""
