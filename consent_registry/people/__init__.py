"""The people register: pupils and staff, and the guardians who decide for young pupils."""
