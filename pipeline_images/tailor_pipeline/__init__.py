"""Tailor's pipeline programs: the stream worker and the scorer the operator deploys."""
