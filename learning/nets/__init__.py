"""The networks, built from small JSON-serialisable specs: the DrQ-v2 expert's, the distilled student's, and the
progressive columns."""
