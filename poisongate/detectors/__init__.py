"""Poisoning detectors, one module each (cleanlab's issue-manager pattern): a `Detector` subclass with a name,
a description and the reason text written into the quarantine, registered by name in `registry`."""
