"""instructavatar: a real-time, instruction-following talking-avatar inference engine."""
__version__ = "0.1.0"
