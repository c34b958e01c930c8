"""Replaying recorded traffic: a profile's workload from a trace file instead of length distributions (docs/traces.md)."""
