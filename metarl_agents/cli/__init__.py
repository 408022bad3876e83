"""Thin command lines over the run configuration: ``metarl-train`` (:mod:`.train`)."""
