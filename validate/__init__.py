"""Proving and stamping: boot an artifact, check it, report, sign and verify."""
