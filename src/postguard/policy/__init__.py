"""Policy decisions (relay, listener rules); pure functions over values, no I/O loops."""
