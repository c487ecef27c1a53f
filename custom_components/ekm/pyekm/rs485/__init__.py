"""Local RS-485 access to EKM Omnimeters v3, v4 and v5."""
