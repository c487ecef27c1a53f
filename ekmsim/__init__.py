"""Simulated EKM world for tests and development: fleet, cloud APIs, MQTT, RS-485."""
