"""Thin command lines over the run configuration: ``metarl-train`` (:mod:`.train`, one run) and
``metarl-bench`` (:mod:`.bench`, a grid and its report), sharing their run options (:mod:`.options`)."""
