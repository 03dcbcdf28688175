"""Where and how shards run: the scheduling policy and placement (plain code) and the Ray adapter."""
