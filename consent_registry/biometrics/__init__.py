"""Biometric processing (face matching): the school's switch, and enrolled people's reference encodings."""
