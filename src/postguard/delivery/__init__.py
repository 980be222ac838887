"""Delivery agents: where committed messages go (Maildir now; LMTP and relay later)."""
